"""``tidings bench`` as a smoke test: a small run against the embedded default, in a process of
its own. Nothing about speed is asserted; only that every notification arrived exactly once and
the report and the plot were written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.support import run_bench

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(240)
def test_bench_smoke_on_the_embedded_default(tmp_path: Path) -> None:
    result = run_bench(tmp_path, "-n", "50", "-c", "5", "--users", "10")
    report = (tmp_path / "artifacts" / "bench" / "report.md").read_text()
    assert "**50 delivered, 0 lost, 0 duplicated, 0 errors**" in report, report
    assert "| delivered | 50 |" in report and "| lost | 0 |" in report
    assert "| duplicated | 0 |" in report
    assert "50 delivered, 0 lost, 0 duplicated" in result.stdout
    png = tmp_path / "artifacts" / "bench" / "report.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(240)
def test_bench_curve_reports_cpu_per_process_json_and_a_plot(tmp_path: Path) -> None:
    """A tiny open-loop curve (100/s, then 200/s unless 100/s saturated the machine; 0.3 s
    each): every step is in the report and its JSON, with the load generator's and the sink's
    CPU apart from Tidings'."""
    command = ["--curve", "--curve-step", "0.3", "--curve-max", "200", "--users", "5"]
    run_bench(tmp_path, *command)
    out = tmp_path / "artifacts" / "bench"
    report = (out / "report.md").read_text()
    assert "## Open-loop curve" in report and "## open loop at 100/s" in report, report
    data = json.loads((out / "report.json").read_text())
    rates = [p["offered_per_s"] for p in data["phases"]]
    assert rates in ([100], [100, 200]), rates
    assert [p["sent"] for p in data["phases"]] == [int(r * 0.3) for r in rates]
    for phase in data["phases"]:
        assert phase["lost"] == phase["duplicated"] == phase["errors"] == 0
        assert {"bench load generator", "bench SMTP sink", "tidings up"} <= set(phase["cpu_ms"])
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(240)
def test_a_warm_up_is_sent_first_and_reported_apart(tmp_path: Path) -> None:
    """``--warmup 20``: 20 notifications at the run's load before the 30 measured, each
    counted (lost, duplicated) in a phase of its own, the measured figures without them."""
    run_bench(tmp_path, "--rate", "100", "-n", "30", "--warmup", "20", "--users", "5")
    out = tmp_path / "artifacts" / "bench"
    data = json.loads((out / "report.json").read_text())
    phases = data["phases"]
    assert [p["sent"] for p in phases] == [20, 30], phases
    assert phases[0]["mode"].startswith("warm-up (open loop at 100/s)"), phases[0]["mode"]
    assert phases[1]["mode"] == "open loop at 100/s"
    assert [p["delivered"] for p in phases] == [20, 30]
    for phase in phases:
        assert phase["lost"] == phase["duplicated"] == phase["errors"] == 0
    report = (out / "report.md").read_text()
    assert "**50 delivered, 0 lost, 0 duplicated, 0 errors**" in report, report
