"""The overview's figures over plain HTTP: a series of sixty minutes per chart, counted from
the database and from every replica's samples (gateway.dashboard_samples)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.dashboard.test_pages import signed_in
from tests.helpers import wait_for_condition
from tests.scenario import send_one, wait_for_status
from tests.system import System
from tidings.core.db import open_database
from tidings.core.migrations import migrate
from tidings.core.status import Status
from tidings.gateway.dashboard_overview import _per_minute
from tidings.gateway.dashboard_samples import add_up, quantile
from tidings.gateway.models import Notification


async def overview(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/dashboard/api/overview")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


async def test_the_overview_charts_an_hour_per_minute_from_a_real_run(system: System) -> None:
    async with signed_in(system) as client:
        before = await overview(client)
        sent = [await send_one(system.gateway) for _ in range(3)]
        for s in sent:
            await wait_for_status(system.gateway, str(s["notification_id"]), "delivered")

        async def counted() -> dict[str, Any] | None:
            o = await overview(client)
            delivered = sum(o["charts"]["status"]["delivered"])
            accepted = sum(o["charts"]["accept"]["count"])
            ended = sum(o["charts"]["e2e"]["count"])
            was = before["charts"]
            grown = (
                delivered >= sum(was["status"]["delivered"]) + 3
                and accepted >= sum(was["accept"]["count"]) + 3
                and ended >= sum(was["e2e"]["count"]) + 3
            )
            return o if grown else None

        o = await wait_for_condition(counted, timeout_s=30, what="the run in the overview")
    assert len(o["minutes"]) == 60 and o["minutes"] == sorted(o["minutes"])
    assert all(o["minutes"][i + 1] - o["minutes"][i] == 60 for i in range(59))
    charts = o["charts"]
    for chart in ("status", "channel", "accept", "e2e", "errors"):
        for name, series in charts[chart].items():
            assert len(series) == 60, (chart, name)
    assert set(charts["status"]) == {s.value for s in Status}
    assert sum(charts["channel"]["email"]) >= 3
    # The newest minutes carry the latencies: percentiles in order.
    p50 = [v for v in charts["accept"]["p50"] if v is not None]
    p99 = [v for v in charts["accept"]["p99"] if v is not None]
    assert p50 and p99 and p50[-1] <= p99[-1]
    assert o["replicas"] >= 1 and o["breakers"], o
    assert set(charts["errors"]) == {"retries", "dead letters"}


def test_quantiles_from_histogram_buckets() -> None:
    # 10 under 0.1 s, 10 between 0.1 and 1 s: the median is 0.1, p95 inside the second bucket.
    h = {"0.1": 10.0, "1.0": 20.0, "+Inf": 20.0}
    assert quantile(0.5, h) == 0.1
    assert 0.1 < (quantile(0.95, h) or 0) < 1.0
    assert quantile(0.5, {"0.1": 0.0, "+Inf": 0.0}) is None
    assert add_up([h, h]) == {"0.1": 20.0, "1.0": 40.0, "+Inf": 40.0}


async def test_counts_per_minute_on_sqlite_the_embedded_default(tmp_path: Path) -> None:
    """The same per-minute SQL on SQLite (the embedded default) as on PostgreSQL."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await asyncio.to_thread(migrate, "tidings.gateway", url, "gateway")
    db = open_database(url, "gateway")
    try:
        last = int(time.time() // 60)
        at = [last, last, last - 5]
        async with db.sessions() as session, session.begin():
            for i, minute in enumerate(at):
                session.add(
                    Notification(
                        id=uuid.uuid4(),
                        request_id=f"r{i}",
                        body_hash="h",
                        user_id=uuid.uuid4(),
                        notification_type="email",
                        template_code="t",
                        language="en",
                        priority=5,
                        variables={},
                        status="delivered" if i else "failed",
                        correlation_id="c",
                        created_at=dt.datetime.fromtimestamp(minute * 60 + 7, dt.UTC),
                    )
                )
        counted = await _per_minute(db, last - 59)
    finally:
        await db.close()
    assert counted["status"]["delivered"] == {last: 1, last - 5: 1}
    assert counted["status"]["failed"] == {last: 1}
    assert counted["channel"]["email"] == {last: 2, last - 5: 1}
