"""``tidings bench`` in a process of its own, as the bench tests run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``tidings bench ARGS`` in ``tmp_path`` without the caller's TIDINGS_ settings; it
    must exit 0 (else its output and the stack's log tell why)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    result = subprocess.run(
        [sys.executable, "-m", "tidings", "bench", *args],
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
    return result
