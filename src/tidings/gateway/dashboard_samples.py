"""The overview's figures that live in a process (latency histograms, breaker states, what
the broker said), made the system's: every gateway replica writes its own row per minute to
``dashboard_samples`` (a few seconds apart; the histograms as counts since the minute began)
and the overview adds every replica's rows up. Rows older than ``dashboard_samples_keep_s``
(two hours) are dropped by the writer itself, a bounded DELETE a minute."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import delete, select

from tidings.core.bus import Bus
from tidings.core.db import Database, utcnow
from tidings.core.tasks import Periodic
from tidings.gateway.models import DashboardSample

log = logging.getLogger(__name__)

# The histograms the overview draws: (sample name, the labels a sample must have).
HISTOGRAMS: dict[str, tuple[str, dict[str, str]]] = {
    "accept": (
        "tidings_http_request_duration_seconds_bucket",
        {"service": "gateway", "method": "POST", "route": "/api/v1/notifications/"},
    ),
    "e2e": ("tidings_stage_seconds_bucket", {"stage": "delivered"}),
}
Histogram = dict[str, float]  # upper bound ("le") -> cumulative count


def _histograms() -> dict[str, Histogram]:
    found: dict[str, Histogram] = {name: {} for name in HISTOGRAMS}
    wanted = {sample: (name, labels) for name, (sample, labels) in HISTOGRAMS.items()}
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name not in wanted:
                continue
            name, labels = wanted[s.name]
            if all(s.labels.get(k) == v for k, v in labels.items()):
                le = s.labels["le"]
                found[name][le] = found[name].get(le, 0.0) + s.value
    return found


def _breakers() -> dict[str, int]:
    return {
        f"{s.labels.get('service', '?')}/{s.labels.get('breaker', '?')}": int(s.value)
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name == "tidings_breaker_state"
    }


def _minus(now: Histogram, then: Histogram) -> Histogram:
    return {le: round(v - then.get(le, 0.0), 6) for le, v in now.items()}


def quantile(q: float, counts: Histogram) -> float | None:
    """Prometheus's histogram_quantile: linear within the bucket; None without samples."""
    bounds = sorted(((float(le), n) for le, n in counts.items()), key=lambda b: b[0])
    if not bounds or bounds[-1][1] <= 0:
        return None
    total = bounds[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, n in bounds:
        if n >= rank:
            if upper == float("inf"):
                return lower
            span = n - below
            return lower + (upper - lower) * ((rank - below) / span if span else 1.0)
        lower, below = upper, n
    return lower


def add_up(histograms: list[Histogram]) -> Histogram:
    total: Histogram = {}
    for h in histograms:
        for le, n in h.items():
            total[le] = total.get(le, 0.0) + n
    return total


@dataclass
class Sampler:
    """This replica's writer of ``dashboard_samples`` (module docstring)."""

    db: Database
    bus: Bus
    keep_s: float  # dashboard_samples_keep_s
    every_s: float = 5.0
    replica: str = field(default_factory=lambda: f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    clock: Callable[[], float] = time.time  # the wall clock: minutes are UTC minutes
    _minute: int = -1
    _base: dict[str, Histogram] = field(default_factory=dict)
    _written: float = float("-inf")
    # One write at a time (the timer's and an overview's): a row is read, then written.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _timer: Periodic = field(init=False)

    def __post_init__(self) -> None:
        self._timer = Periodic("dashboard-sampler", self.write, self.every_s)

    def start(self) -> None:
        self._timer.start()

    async def stop(self) -> None:
        await self._timer.stop()

    async def fresh(self, max_age_s: float = 1.0) -> None:
        """This replica's row as of at most ``max_age_s`` ago (the overview asks on each poll:
        many open dashboards cost one write a second, not one each)."""
        if time.monotonic() - self._written >= max_age_s:
            await self.write()

    async def write(self) -> None:
        """This replica's row for the current minute, as it stands now."""
        self._written = time.monotonic()
        async with self._lock:
            await self._write()

    async def _write(self) -> None:
        now = _histograms()
        minute = int(self.clock() // 60)
        if minute != self._minute:
            if self._minute >= 0:  # the minute that ended gets its last counts
                await self._store(self._minute, now, {}, {})
                await self._drop_old(minute)
            self._minute, self._base = minute, now
        try:
            depths = await asyncio.wait_for(self.bus.depths(), 2.0)
        except Exception:  # the broker's reading is optional (a timeout too)
            depths = {}
        queues = {q: [ready, consumers] for q, (ready, consumers) in depths.items()}
        await self._store(minute, now, queues, _breakers())

    async def _store(
        self,
        minute: int,
        now: dict[str, Histogram],
        queues: dict[str, list[int]],
        breakers: dict[str, int],
    ) -> None:
        payload: dict[str, Any] = {
            name: _minus(now[name], self._base.get(name, {})) for name in HISTOGRAMS
        }
        async with self.db.sessions() as session, session.begin():
            row = await session.get(DashboardSample, (self.replica, minute))
            if row is None:
                session.add(
                    DashboardSample(
                        replica=self.replica,
                        minute=minute,
                        payload=payload | {"queues": queues, "breakers": breakers},
                    )
                )
            else:  # keep the broker's and the breakers' last reading of the minute
                kept = row.payload
                row.payload = payload | {
                    "queues": queues or kept.get("queues", {}),
                    "breakers": breakers or kept.get("breakers", {}),
                }
                row.updated_at = utcnow()

    async def _drop_old(self, minute: int) -> None:
        async with self.db.sessions() as session, session.begin():
            await session.execute(
                delete(DashboardSample).where(
                    DashboardSample.minute < minute - int(self.keep_s // 60)
                )
            )


async def samples_since(db: Database, minute: int) -> list[DashboardSample]:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(DashboardSample).where(DashboardSample.minute >= minute)
        )
        return list(rows.all())
