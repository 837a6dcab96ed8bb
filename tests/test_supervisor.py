"""The supervisor's children never outlive it: a supervising task that is cancelled (the
supervisor going for any reason but its own stop) kills its child, which a bench found left
running, its parent gone. The child here is a stand-in (a shell script that writes its pid
and waits), not a service: what is under test is the supervising, not the service."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for_condition
from tidings import supervisor


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_a_cancelled_supervisor_kills_its_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    child = tmp_path / "child.sh"
    child.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nexec sleep 600\n')
    child.chmod(0o755)
    # `sys.executable -m tidings run templates` becomes the stand-in (its arguments ignored).
    monkeypatch.setattr(sys, "executable", str(child))
    stopping = asyncio.Event()
    task = asyncio.create_task(
        supervisor._supervise_one("templates", "templates", {}, stopping, 5.0)
    )

    async def started() -> bool:
        return pid_file.exists() and pid_file.read_text().strip().isdigit()

    await wait_for_condition(started, timeout_s=30, what="the child started")
    pid = int(pid_file.read_text())
    assert alive(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def gone() -> bool:
        return not alive(pid)

    try:
        await wait_for_condition(gone, timeout_s=30, what="the child killed")
    finally:
        if alive(pid):  # the test failed: leave nothing running
            os.kill(pid, signal.SIGKILL)
