"""The figures of a benchmark run: printed, written as Markdown, and plotted over time."""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from tidings.bench.runner import BenchResult, Phase


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile of ``values`` (nan when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Figures:
    mode: str
    offered_per_s: float | None
    sent: int
    accepted: int
    errors: int
    delivered: int
    lost: int
    duplicated: int
    accepted_per_s: float
    accept_ms: dict[str, float]
    e2e_ms: dict[str, float]
    e2e_per_s: float
    send_s: float
    e2e_s: float
    cpu_ms: dict[str, float]  # CPU ms per accepted notification (= CPU s per 1,000)


def figures(phase: Phase) -> Figures:
    sent = phase.sent
    accepted = [s for s in sent.values() if s.status == 202]
    arrivals = phase.arrivals
    delivered = [s for s in accepted if s.notification_id in arrivals]
    first_send = min((s.send_t for s in sent.values()), default=0.0)
    last_accept = max((s.accept_t for s in sent.values()), default=first_send)
    last_arrival = max((arrivals[s.notification_id][0] for s in delivered), default=first_send)
    accept_lat = [(s.accept_t - s.send_t) * 1000 for s in accepted]
    e2e_lat = [(arrivals[s.notification_id][0] - s.send_t) * 1000 for s in delivered]
    send_s = last_accept - first_send
    e2e_s = last_arrival - first_send
    per = len(accepted) or 1
    return Figures(
        mode=phase.mode,
        offered_per_s=phase.rate,
        sent=len(sent),
        accepted=len(accepted),
        errors=len(sent) - len(accepted),
        delivered=len(delivered),
        lost=len(accepted) - len(delivered),
        duplicated=sum(len(arrivals[s.notification_id]) - 1 for s in delivered),
        accepted_per_s=len(accepted) / send_s if send_s > 0 else math.nan,
        accept_ms={p: percentile(accept_lat, float(p[1:])) for p in ("p50", "p90", "p99", "p99.9")},
        e2e_ms={p: percentile(e2e_lat, float(p[1:])) for p in ("p50", "p90", "p99")},
        e2e_per_s=len(delivered) / e2e_s if e2e_s > 0 else math.nan,
        send_s=send_s,
        e2e_s=e2e_s,
        cpu_ms={name: s * 1000 / per for name, s in sorted(phase.cpu.items())},
    )


def cpu_groups(cpu_ms: dict[str, float]) -> dict[str, float]:
    """Tidings' own processes, the servers it uses, and the bench itself, each summed."""
    groups = {"Tidings": 0.0, "PostgreSQL + RabbitMQ + Redis": 0.0, "bench": 0.0}
    for name, ms in cpu_ms.items():
        if name.endswith(" server"):
            groups["PostgreSQL + RabbitMQ + Redis"] += ms
        elif name.startswith("bench "):
            groups["bench"] += ms
        else:
            groups["Tidings"] += ms
    return groups


def summary(result: BenchResult, f: Figures) -> str:
    c = result.config
    lines = [
        f"Tidings bench: {f.sent} notifications, {f.mode}, {c.users} users; {c.stack}",
        f"  accepted        {f.accepted} of {f.sent} in {f.send_s:.2f}s: "
        f"{f.accepted_per_s:.1f} accepted/s",
        "  accept latency  " + "  ".join(f"{p} {v:.1f} ms" for p, v in f.accept_ms.items()),
        "  end to end      " + "  ".join(f"{p} {v:.1f} ms" for p, v in f.e2e_ms.items()),
        f"  throughput      {f.e2e_per_s:.1f} notifications/s end to end "
        f"({f.delivered} in {f.e2e_s:.2f}s)",
        f"  {f.delivered} delivered, {f.lost} lost, {f.duplicated} duplicated, "
        f"{f.errors} errors (non-202)",
    ]
    if f.cpu_ms:
        lines.append(
            "  CPU ms / notif  "
            + ", ".join(f"{n} {s:.2f}" for n, s in f.cpu_ms.items() if s >= 0.005)
            + f"; total {sum(f.cpu_ms.values()):.2f}"
        )
        lines.append(
            "                  "
            + ", ".join(f"{n} {s:.2f}" for n, s in cpu_groups(f.cpu_ms).items())
        )
    return "\n".join(lines)


def curve_rows(every: list[Figures]) -> list[str]:
    out = [
        "| offered /s | accepted /s | delivered /s | accept p50 | accept p99 | e2e p50 | e2e p99 "
        "| lost | duplicated | CPU ms / notification (Tidings · servers · bench) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in every:
        g = cpu_groups(f.cpu_ms)
        out.append(
            f"| {f.offered_per_s or 0:g} | {f.accepted_per_s:.1f} | {f.e2e_per_s:.1f} "
            f"| {f.accept_ms['p50']:.1f} ms | {f.accept_ms['p99']:.1f} ms "
            f"| {f.e2e_ms['p50']:.1f} ms | {f.e2e_ms['p99']:.1f} ms | {f.lost} | {f.duplicated} "
            f"| {' · '.join(f'{v:.2f}' for v in g.values())} |"
        )
    return out


def markdown(result: BenchResult, every: list[Figures], plot: str | None) -> str:
    c = result.config
    lost = sum(f.lost for f in every)
    duplicated = sum(f.duplicated for f in every)
    errors = sum(f.errors for f in every)
    delivered = sum(f.delivered for f in every)
    out = [
        "# Tidings benchmark report",
        "",
        f"- command: `{result.command}`",
        f"- run: {result.run_id}, started {result.started_at}",
        f"- stack: {c.stack}",
        f"- load: email notifications, {c.mode}, {c.users} recipients cycled",
        f"- machine: {platform.node()}, {platform.platform()}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "at the end",
        "",
        f"**{delivered} delivered, {lost} lost, {duplicated} duplicated, {errors} errors**"
        f" ({result.unexpected} unexpected messages at the sink)",
        "",
    ]
    if result.webhooks is not None:
        out += [_webhooks_line(result), ""]
    if c.curve:
        measured = [f for f, p in zip(every, result.phases, strict=True) if not p.warmup]
        out += ["## Open-loop curve", "", *curve_rows(measured)]
    for f, phase in zip(every, result.phases, strict=True):
        out += ["", f"## {f.mode}", "", "| figure | value |", "|---|---|"]
        out += [
            f"| sent | {f.sent} |",
            f"| accepted (202) | {f.accepted} |",
            f"| errors (non-202) | {f.errors} |",
            f"| delivered | {f.delivered} |",
            f"| lost | {f.lost} |",
            f"| duplicated | {f.duplicated} |",
            f"| accepted/s | {f.accepted_per_s:.1f} |",
        ]
        out += [f"| accept latency {p} | {v:.1f} ms |" for p, v in f.accept_ms.items()]
        out += [f"| end-to-end latency {p} | {v:.1f} ms |" for p, v in f.e2e_ms.items()]
        out.append(
            f"| end-to-end throughput | {f.e2e_per_s:.1f} /s ({f.delivered} in {f.e2e_s:.2f} s) |"
        )
        out += ["", "CPU ms per notification (= CPU s per 1,000):", ""]
        if f.cpu_ms:
            out += ["| process | CPU ms / notification |", "|---|---|"]
            out += [f"| {name} | {s:.3f} |" for name, s in f.cpu_ms.items()]
            out += [f"| **{name}** | {s:.3f} |" for name, s in cpu_groups(f.cpu_ms).items()]
            out.append(f"| **total** | {sum(f.cpu_ms.values()):.3f} |")
        else:
            out.append("not measured")
        if phase.error_samples:
            out += ["", "First errors:", ""] + [f"- `{e}`" for e in phase.error_samples]
        if phase.profile:
            out += ["", phase.profile.replace("\n# ", "\n### ").replace("\n## ", "\n#### ")]
    if result.cpu_note:
        out += ["", result.cpu_note]
    if plot is not None:
        out += ["", f"![the run plotted]({plot})"]
    return "\n".join(out) + "\n"


def _webhooks_line(result: BenchResult) -> str:
    assert result.webhooks is not None
    line = result.webhooks.line(result.config.webhook_down, result.config.webhook_slow_ms)
    return f"**W{line[1:]}** (counted by webhook-id at the bench's receiver)."


def as_json(result: BenchResult, every: list[Figures]) -> bytes:
    return orjson.dumps(
        {
            "command": result.command,
            "run_id": result.run_id,
            "started_at": result.started_at,
            "stack": result.config.stack,
            "mode": result.config.mode,
            "unexpected": result.unexpected,
            "cpu_note": result.cpu_note,
            "webhooks": asdict(result.webhooks) if result.webhooks is not None else None,
            "phases": [asdict(f) | {"cpu_ms_groups": cpu_groups(f.cpu_ms)} for f in every],
        },
        option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
    )


def timeline(
    phase: Phase,
) -> tuple[list[float], list[float], list[float], list[float], list[float], list[float]]:
    """Per time bucket: start (s), accepted/s, delivered/s, accept p99, e2e p50, e2e p99 (ms)."""
    sent = phase.sent
    if not sent:
        return [], [], [], [], [], []
    t0 = min(s.send_t for s in sent.values())
    ends = [s.accept_t for s in sent.values()] + [t[0] for t in phase.arrivals.values()]
    span = max(ends) - t0
    width = 1.0 if span >= 20 else max(span / 20, 0.05)
    buckets = int(span / width) + 1
    acc: list[list[float]] = [[] for _ in range(buckets)]
    arr: list[list[float]] = [[] for _ in range(buckets)]
    for s in sent.values():
        if s.status == 202:
            acc[int((s.accept_t - t0) / width)].append((s.accept_t - s.send_t) * 1000)
            if s.notification_id in phase.arrivals:
                first = phase.arrivals[s.notification_id][0]
                arr[int((first - t0) / width)].append((first - s.send_t) * 1000)
    xs = [k * width for k in range(buckets)]
    return (
        xs,
        [len(b) / width for b in acc],
        [len(b) / width for b in arr],
        [percentile(b, 99) for b in acc],
        [percentile(b, 50) for b in arr],
        [percentile(b, 99) for b in arr],
    )


def plot_png(result: BenchResult, every: list[Figures], path: Path) -> str | None:
    """Draw the plot (matplotlib, PNG): over time for one load, latency against the offered
    rate for a curve. Returns why it was not drawn, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'tidings[bench]'): no plot"
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    measured = [p for p in result.phases if not p.warmup]
    every = [f for f, p in zip(every, result.phases, strict=True) if not p.warmup]
    if result.config.curve:
        xs = [f.offered_per_s or 0.0 for f in every]
        top.plot(xs, xs, "k:", label="offered/s")
        top.plot(xs, [f.accepted_per_s for f in every], "o-", label="accepted/s")
        top.plot(xs, [f.e2e_per_s for f in every], "o-", label="delivered/s")
        for key, label in (("p50", "accept p50"), ("p99", "accept p99")):
            bottom.plot(xs, [f.accept_ms[key] for f in every], "o-", label=label)
        for key, label in (("p50", "end-to-end p50"), ("p99", "end-to-end p99")):
            bottom.plot(xs, [f.e2e_ms[key] for f in every], "o-", label=label)
        bottom.set_xscale("log", base=2)
        bottom.set_yscale("log")
        bottom.set_xlabel("offered notifications/s (open loop)")
    else:
        xs, accepted, delivered, acc99, e50, e99 = timeline(measured[0])
        top.plot(xs, accepted, label="accepted/s")
        top.plot(xs, delivered, label="delivered/s")
        bottom.plot(xs, acc99, label="accept p99")
        bottom.plot(xs, e50, label="end-to-end p50")
        bottom.plot(xs, e99, label="end-to-end p99")
        bottom.set_xlabel("seconds since the first request")
    top.set_ylabel("notifications/s")
    bottom.set_ylabel("latency (ms)")
    for axes in (top, bottom):
        axes.legend()
        axes.grid(alpha=0.3)
    fig.suptitle(f"Tidings bench: {result.config.mode}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def write_outputs(result: BenchResult, report: Path, plot: Path | None) -> int:
    """Print the summary, write the report, its JSON beside it (same name, ``.json``) and the
    plot; 0 when nothing was lost, duplicated, unexpected or refused, 1 otherwise."""
    every = [figures(phase) for phase in result.phases]
    for f in every:
        print(summary(result, f))
    if result.unexpected:
        print(f"  {result.unexpected} unexpected messages at the sink")
    if result.webhooks is not None:
        print(
            "  " + result.webhooks.line(result.config.webhook_down, result.config.webhook_slow_ms)
        )
    if plot is not None:
        why = plot_png(result, every, plot)
        if why:
            print(why, file=sys.stderr)
            plot = None
        else:
            print(f"plot: {plot}")
    report.parent.mkdir(parents=True, exist_ok=True)
    link = os.path.relpath(plot, report.parent) if plot is not None else None
    report.write_text(markdown(result, every, link))
    report.with_suffix(".json").write_bytes(as_json(result, every))
    print(f"report: {report} (and {report.with_suffix('.json').name})")
    for phase in result.phases:
        if phase.profile and result.config.profile_dir is not None:
            print(f"profiles: {result.config.profile_dir}")
            break
    # A curve's last step is past saturation: its losses (a lost message is one not arrived
    # within --timeout) and errors still count.
    bad = result.unexpected + sum(f.lost + f.duplicated + f.errors for f in every)
    if result.webhooks is not None and result.config.webhooks_awaited:
        bad += result.webhooks.lost + result.webhooks.duplicated
    return 0 if bad == 0 else 1
