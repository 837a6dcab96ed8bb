"""The figures of a benchmark run: printed, written as Markdown, and plotted over time."""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from tidings.bench.runner import BenchResult


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile of ``values`` (nan when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Figures:
    sent: int
    accepted: int
    errors: int
    delivered: int
    lost: int
    duplicated: int
    foreign: int
    accepted_per_s: float
    accept_ms: dict[str, float]
    e2e_ms: dict[str, float]
    e2e_per_s: float
    send_s: float
    e2e_s: float
    cpu_per_1000: dict[str, float]


def figures(result: BenchResult) -> Figures:
    sent = result.sent
    accepted = {rid: s for rid, s in sent.items() if s.status == 202}
    arrivals = result.arrivals
    delivered = [rid for rid in accepted if rid in arrivals]
    first_send = min((s.send_t for s in sent.values()), default=0.0)
    last_accept = max((s.accept_t for s in sent.values()), default=first_send)
    first_arrivals = [arrivals[rid][0] for rid in delivered]
    last_arrival = max(first_arrivals, default=first_send)
    accept_lat = [(s.accept_t - s.send_t) * 1000 for s in accepted.values()]
    e2e_lat = [(arrivals[rid][0] - accepted[rid].send_t) * 1000 for rid in delivered]
    send_s = last_accept - first_send
    e2e_s = last_arrival - first_send
    per = len(accepted) or 1
    return Figures(
        sent=len(sent),
        accepted=len(accepted),
        errors=len(sent) - len(accepted),
        delivered=len(delivered),
        lost=len(accepted) - len(delivered),
        duplicated=sum(len(times) - 1 for times in arrivals.values()),
        foreign=result.foreign,
        accepted_per_s=len(accepted) / send_s if send_s > 0 else math.nan,
        accept_ms={p: percentile(accept_lat, float(p[1:])) for p in ("p50", "p90", "p99", "p99.9")},
        e2e_ms={p: percentile(e2e_lat, float(p[1:])) for p in ("p50", "p90", "p99")},
        e2e_per_s=len(delivered) / e2e_s if e2e_s > 0 else math.nan,
        send_s=send_s,
        e2e_s=e2e_s,
        cpu_per_1000={name: s * 1000 / per for name, s in sorted(result.cpu.items())},
    )


def summary(result: BenchResult, f: Figures) -> str:
    c = result.config
    lines = [
        f"Tidings bench: {c.n} notifications, {c.mode}, {c.users} users; {c.stack}",
        f"  accepted        {f.accepted} of {f.sent} in {f.send_s:.2f}s: "
        f"{f.accepted_per_s:.1f} accepted/s",
        "  accept latency  " + "  ".join(f"{p} {v:.1f} ms" for p, v in f.accept_ms.items()),
        "  end to end      " + "  ".join(f"{p} {v:.1f} ms" for p, v in f.e2e_ms.items()),
        f"  throughput      {f.e2e_per_s:.1f} notifications/s end to end "
        f"({f.delivered} in {f.e2e_s:.2f}s)",
        f"  {f.delivered} delivered, {f.lost} lost, {f.duplicated} duplicated, "
        f"{f.errors} errors (non-202)",
    ]
    if f.cpu_per_1000:
        lines.append(
            "  CPU s / 1,000   "
            + ", ".join(f"{n} {s:.2f}" for n, s in f.cpu_per_1000.items() if s >= 0.005)
            + f"; total {sum(f.cpu_per_1000.values()):.2f}"
        )
    if result.cpu_note:
        lines.append(f"  CPU             {result.cpu_note}")
    return "\n".join(lines)


def markdown(result: BenchResult, f: Figures, plot: str | None) -> str:
    c = result.config
    out = [
        "# Tidings benchmark report",
        "",
        f"- command: `{result.command}`",
        f"- run: {result.run_id}, started {result.started_at}",
        f"- stack: {c.stack}",
        f"- load: {c.n} email notifications, {c.mode}, {c.users} recipients cycled",
        f"- machine: {platform.node()}, {platform.platform()}, Python {sys.version.split()[0]}",
        "",
        f"**{f.delivered} delivered, {f.lost} lost, {f.duplicated} duplicated, {f.errors} errors**",
        "",
        "| figure | value |",
        "|---|---|",
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
    out += [
        f"| end-to-end throughput | {f.e2e_per_s:.1f} /s ({f.delivered} in {f.e2e_s:.2f} s) |",
    ]
    if f.foreign:
        out.append(f"| other messages at the sink (not this run's) | {f.foreign} |")
    out += ["", "## CPU seconds per 1,000 notifications", ""]
    if f.cpu_per_1000:
        out += ["| process | CPU s / 1,000 |", "|---|---|"]
        out += [f"| {name} | {s:.2f} |" for name, s in f.cpu_per_1000.items()]
        out.append(f"| **total** | {sum(f.cpu_per_1000.values()):.2f} |")
    else:
        out.append("not measured")
    if result.cpu_note:
        out += ["", result.cpu_note]
    if result.error_samples:
        out += ["", "## First errors", ""] + [f"- `{e}`" for e in result.error_samples]
    if plot is not None:
        out += ["", f"![throughput and latency over time]({plot})"]
    return "\n".join(out) + "\n"


def timeline(
    result: BenchResult,
) -> tuple[list[float], list[float], list[float], list[float], list[float], list[float]]:
    """Per time bucket: start (s), accepted/s, delivered/s, accept p99, e2e p50, e2e p99 (ms)."""
    sent = result.sent
    if not sent:
        return [], [], [], [], [], []
    t0 = min(s.send_t for s in sent.values())
    ends = [s.accept_t for s in sent.values()] + [t[0] for t in result.arrivals.values()]
    span = max(ends) - t0
    width = 1.0 if span >= 20 else max(span / 20, 0.05)
    buckets = int(span / width) + 1
    acc: list[list[float]] = [[] for _ in range(buckets)]
    arr: list[list[float]] = [[] for _ in range(buckets)]
    for rid, s in sent.items():
        if s.status == 202:
            acc[int((s.accept_t - t0) / width)].append((s.accept_t - s.send_t) * 1000)
            if rid in result.arrivals:
                first = result.arrivals[rid][0]
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


def plot_png(result: BenchResult, path: Path) -> str | None:
    """Draw the plot; returns why it was not drawn, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'tidings[bench]'): no plot"
    xs, accepted, delivered, acc99, e50, e99 = timeline(result)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(xs, accepted, label="accepted/s")
    top.plot(xs, delivered, label="delivered/s")
    top.set_ylabel("notifications/s")
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(xs, acc99, label="accept p99")
    bottom.plot(xs, e50, label="end-to-end p50")
    bottom.plot(xs, e99, label="end-to-end p99")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds since the first request")
    bottom.legend()
    bottom.grid(alpha=0.3)
    fig.suptitle(f"Tidings bench: {result.config.n} notifications, {result.config.mode}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def write_outputs(result: BenchResult, report: Path, plot: Path | None) -> int:
    """Print the summary, write the report (and the plot); 0 when nothing was lost,
    duplicated or refused, 1 otherwise."""
    f = figures(result)
    print(summary(result, f))
    if plot is not None:
        why = plot_png(result, plot)
        if why:
            print(why, file=sys.stderr)
            plot = None
        else:
            print(f"plot: {plot}")
    report.parent.mkdir(parents=True, exist_ok=True)
    link = os.path.relpath(plot, report.parent) if plot is not None else None
    report.write_text(markdown(result, f, link))
    print(f"report: {report}")
    return 0 if f.lost == f.duplicated == f.errors == 0 else 1
