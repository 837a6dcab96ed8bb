"""``tidings bench --profile DIR``: py-spy on each process of the run during its steady phase.

One ``py-spy record --format raw --nonblocking`` per process (every Tidings process, the load
generator and the SMTP sink), started once a tenth of the notifications have been answered and
stopped (SIGINT: py-spy then writes its file) at nine tenths, so start-up and drain are left
out. The raw format is one folded stack per line with its sample count, innermost frame last;
the summary adds each stack's count to its innermost frame (the frame's *own* time) and turns
samples into µs per notification: samples ÷ rate (Hz) ÷ notifications answered in the window."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

RATE_HZ = 100
TOP = 15
_LINE = re.compile(r":\d+\)$")  # a frame's line number: frames are summed per function


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Profiler:
    directory: Path
    pids: dict[str, int]  # name -> pid
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    note: str = ""
    started_at: int = 0  # answers counted when the profiles started

    async def start(self, answered: int) -> None:
        exe = py_spy()
        if exe is None:
            self.note = "py-spy is not installed (pip install 'tidings[bench]'): no profiles"
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.started_at = answered
        for name, pid in self.pids.items():
            out = self.directory / f"{_slug(name)}-{pid}.txt"
            self.procs[name] = await asyncio.create_subprocess_exec(
                exe, "record", "--format", "raw", "--nonblocking", "-r", str(RATE_HZ),
                "-p", str(pid), "-o", str(out),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip

    async def stop(self, answered: int) -> str:
        """Stop every py-spy, write ``summary.md`` beside the profiles and return it."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if not self.procs:
            return self.note
        notifications = max(1, answered - self.started_at)
        text = summarise(self.directory, self.pids, notifications)
        (self.directory / "summary.md").write_text(text)
        return text


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def own_times(raw: str) -> dict[str, int]:
    """Samples per innermost frame (line numbers dropped) of a py-spy raw profile."""
    own: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frame = _LINE.sub(")", stack.rsplit(";", 1)[-1])
        own[frame] = own.get(frame, 0) + int(count)
    return own


def summarise(directory: Path, pids: dict[str, int], notifications: int) -> str:
    per_sample_us = 1e6 / RATE_HZ / notifications
    out = [
        "# Profiles (py-spy, steady phase)",
        "",
        f"{notifications} notifications answered while profiling, {RATE_HZ} samples/s; "
        "µs per notification = own samples * 10,000 µs / notifications.",
    ]
    for name, pid in pids.items():
        path = directory / f"{_slug(name)}-{pid}.txt"
        own = own_times(path.read_text()) if path.exists() else {}
        total = sum(own.values())
        out += ["", f"## {name} (pid {pid}): {total * per_sample_us:.0f} µs per notification", ""]
        if not own:
            out.append("no samples (py-spy could not attach, or the process was idle)")
            continue
        out += ["| own µs / notification | share | frame |", "|---|---|---|"]
        for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:TOP]:
            out.append(f"| {n * per_sample_us:.1f} | {n / total:.1%} | `{frame}` |")
    return "\n".join(out) + "\n"
