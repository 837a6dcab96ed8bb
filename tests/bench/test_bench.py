"""``tidings bench`` as a smoke test: a small run against the embedded default, in a process of
its own. Nothing about speed is asserted; only that every notification arrived exactly once and
the report and the plot were written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(240)
def test_bench_smoke_on_the_embedded_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    result = subprocess.run(
        [sys.executable, "-m", "tidings", "bench", "-n", "50", "-c", "5", "--users", "10"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    log = tmp_path / "artifacts" / "bench" / "tidings-up.log"
    assert result.returncode == 0, (
        result.stdout[-3000:]
        + result.stderr[-3000:]
        + (log.read_text()[-3000:] if log.exists() else "")
    )
    report = (tmp_path / "artifacts" / "bench" / "report.md").read_text()
    assert "**50 delivered, 0 lost, 0 duplicated, 0 errors**" in report, report
    assert "| delivered | 50 |" in report and "| lost | 0 |" in report
    assert "| duplicated | 0 |" in report
    assert "50 delivered, 0 lost, 0 duplicated" in result.stdout
    png = tmp_path / "artifacts" / "bench" / "report.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
