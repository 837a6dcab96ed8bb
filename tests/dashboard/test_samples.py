"""A replica's per-minute rows (gateway.dashboard_samples): a minute's row holds what was
counted in that minute, the minute that ended gets its last counts, and rows older than
two hours are dropped, on SQLite as the embedded default keeps them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from tidings.core.bus.memory import MemoryBus
from tidings.core.db import open_database
from tidings.core.metrics import HTTP_SECONDS
from tidings.core.migrations import migrate
from tidings.gateway.dashboard_samples import Sampler
from tidings.gateway.models import DashboardSample

KEEP_MINUTES = 120  # TIDINGS_DASHBOARD_SAMPLES_KEEP_S's default, two hours


def accepted(n: int) -> None:
    for _ in range(n):
        HTTP_SECONDS.labels("gateway", "POST", "/api/v1/notifications/", "202").observe(0.004)


async def test_each_minute_its_own_counts_and_old_rows_dropped(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await asyncio.to_thread(migrate, "tidings.gateway", url, "gateway")
    db = open_database(url, "gateway")
    bus = MemoryBus()
    clock = {"now": 1_000_000 * 60.0}
    try:
        first = int(clock["now"] // 60)
        async with db.sessions() as session, session.begin():
            old = DashboardSample(replica="gone", minute=first - KEEP_MINUTES - 1, payload={})
            session.add(old)
        sampler = Sampler(db, bus, KEEP_MINUTES * 60.0, clock=lambda: clock["now"])
        await sampler.write()  # the base of the first minute
        accepted(3)
        await sampler.write()
        accepted(2)
        clock["now"] += 60  # the next minute: the first gets its last two
        await sampler.write()
        accepted(4)
        await sampler.fresh(max_age_s=0)
        async with db.sessions() as session:
            rows = {
                (r.replica, r.minute): r.payload
                for r in (await session.scalars(select(DashboardSample))).all()
            }
    finally:
        await db.close()
    mine = {m: p["accept"]["+Inf"] for (replica, m), p in rows.items() if replica != "gone"}
    assert mine == {first: 5, first + 1: 4}
    assert ("gone", first - KEEP_MINUTES - 1) not in rows, "older than two hours: dropped"
