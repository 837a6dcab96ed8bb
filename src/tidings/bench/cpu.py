"""CPU seconds of the processes a benchmark run involves, read from ``/proc`` (Linux).

Each group of processes is named: the Tidings processes (a root, ``tidings up``, and its
children, named by service), the load generator, the SMTP sink, and the PostgreSQL, RabbitMQ
and Redis servers when they listen on this machine, found as the owners of their listening
ports (``/proc/net/tcp``, then the socket inodes in ``/proc/<pid>/fd``). A server's figure is
its root process and every descendant, plus the children it reaped meanwhile (a PostgreSQL
backend that ended during the run is counted in the postmaster's ``cutime``/``cstime``); it is
the server's whole CPU, whoever it served."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
# The servers Tidings runs on, by their default port.
INFRASTRUCTURE = {5432: "PostgreSQL", 5672: "RabbitMQ", 6379: "Redis"}


@dataclass
class Stat:
    pid: int
    comm: str
    ppid: int
    own_s: float  # utime + stime, every thread
    reaped_s: float  # cutime + cstime: children that ended and were waited for


def stat(pid: int) -> Stat | None:
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses itself.
    comm = raw[raw.index(b"(") + 1 : raw.rindex(b")")].decode("utf-8", "replace")
    fields = raw[raw.rindex(b")") + 2 :].split()
    # Fields after the name, from 0: state, ppid, ..., utime (11), stime, cutime, cstime.
    return Stat(
        pid,
        comm,
        int(fields[1]),
        (int(fields[11]) + int(fields[12])) * TICK_S,
        (int(fields[13]) + int(fields[14])) * TICK_S,
    )


def all_stats() -> dict[int, Stat]:
    out: dict[int, Stat] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (s := stat(int(entry.name))) is not None:
            out[s.pid] = s
    return out


def descendants(root: int, stats: dict[int, Stat]) -> list[int]:
    children: dict[int, list[int]] = {}
    for s in stats.values():
        children.setdefault(s.ppid, []).append(s.pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out.append(pid)
            todo += children.get(pid, [])
    return out


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (TCP, IPv4 or IPv6)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def port_owner(port: int) -> int | None:
    """The process that listens on ``port``, climbed to the root of its server (the
    topmost ancestor with the same command name), or None."""
    wanted = {f"socket:[{i}]" for i in listening_inodes(port)}
    if not wanted:
        return None
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    return server_root(int(entry.name))
            except OSError:
                continue
    return None


def server_root(pid: int) -> int:
    me = stat(pid)
    while me is not None and (parent := stat(me.ppid)) is not None and parent.comm == me.comm:
        me = parent
    return pid if me is None else me.pid


class Cpu:
    """CPU seconds per group between ``begin()`` and ``end()``. A group is a root process and
    its descendants (the root's reaped children included), or one process alone (``alone``);
    a process that started meanwhile counts from zero. The children of the ``tidings`` roots
    are named by service."""

    def __init__(self, tidings: list[int], alone: dict[str, int]) -> None:
        self.note = "" if (PROC / "self" / "stat").exists() else "no /proc: no CPU figures"
        self.tidings = list(tidings)
        self.alone = dict(alone)
        self.groups: dict[str, int] = {}
        for port, label in INFRASTRUCTURE.items():
            owner = port_owner(port) if not self.note else None
            if owner is not None:
                self.groups[f"{label} server"] = owner
        self.start: dict[str, float] = {}

    def sample(self) -> dict[str, float]:
        if self.note:
            return {}
        stats = all_stats()
        out: dict[str, float] = {}

        def add(label: str, s: Stat, reaped: bool) -> None:
            out[label] = out.get(label, 0.0) + s.own_s + (s.reaped_s if reaped else 0.0)

        for name, pid in self.alone.items():
            if pid in stats:
                add(name, stats[pid], reaped=False)
        for name, root in self.groups.items():
            for pid in descendants(root, stats):
                add(name, stats[pid], reaped=pid == root)
        for root in self.tidings:
            for pid in descendants(root, stats):
                add(service_name(pid), stats[pid], reaped=pid == root)
        return out

    def begin(self) -> None:
        self.start = self.sample()

    def end(self) -> dict[str, float]:
        return {name: s - self.start.get(name, 0.0) for name, s in sorted(self.sample().items())}


def service_name(pid: int) -> str:
    """``gateway`` for ``python -m tidings run gateway``, ``tidings up`` for the supervisor
    (or the embedded default's one process), else the command line's tail."""
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    words = [a.decode("utf-8", "replace") for a in argv if a]
    if "run" in words and words.index("run") + 1 < len(words):
        return words[words.index("run") + 1]
    if "up" in words:
        return "tidings up"
    return " ".join(words[-3:]) or str(pid)
