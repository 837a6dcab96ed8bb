"""The capture trigger's plan (migration gateway 0015): PL/pgSQL plans webhook_capture()'s
insert once per connection, at its first call. When that call was a large insert into a small
history, the plan read the whole history for each later row; now it reads a notification's
rows through its index whatever the sizes were. Counted in the transaction's own statistics
(pg_stat_xact_user_tables: no flush delay), on the revision before and on the head."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.core.db import engine_for
from tidings.core.migrations import migrate
from tidings.core.settings import async_database_url

ENDPOINT = """INSERT INTO webhook_endpoints (id, owner, url, description, events, secret,
    created_at, updated_at) VALUES (:id, 'admin', 'https://x.example/h', '', '["*"]', 'sealed',
    now(), now())"""
NOTIFICATIONS = """INSERT INTO notifications (id, owner, request_id, body_hash, user_id,
    notification_type, template_code, language, priority, variables, status, correlation_id,
    round, attempt, created_at, updated_at)
    SELECT u, 'admin', u::text, 'h', u, 'email', 't', 'en', 1, '{}', 'pending', 'c', 0, 0,
    now(), now() FROM unnest(CAST(:ids AS uuid[])) AS u"""
HISTORY = """INSERT INTO notification_events (notification_id, status, detail, created_at)
    SELECT u, 'queued', 'published', now() FROM unnest(CAST(:ids AS uuid[])) AS u"""
SEQ_SCANS = """SELECT coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables
    WHERE relname = 'notification_events'"""

FIRST = 200  # the first call's rows: a bench's first batch, on an empty history
LATER = 50  # single-row inserts after it, on the same connection


@pytest.fixture(scope="module", autouse=True)
def no_endpoint_left() -> None:
    """Not the package's: this test makes a database of its own."""


async def _scans_after_a_large_first_call(engine: AsyncEngine) -> tuple[int, int]:
    """(sequential scans of the history, rows captured) for LATER one-row inserts made after
    a FIRST-row one, all on one new connection (the plan is the connection's)."""
    async with engine.connect() as conn:
        first = [uuid.uuid4() for _ in range(FIRST)]
        await conn.execute(text(NOTIFICATIONS), {"ids": first})
        await conn.execute(text(HISTORY), {"ids": first})  # the function is planned here
        await conn.commit()
        later = [uuid.uuid4() for _ in range(LATER)]
        await conn.execute(text(NOTIFICATIONS), {"ids": later})
        before = (await conn.execute(text(SEQ_SCANS))).scalar_one()
        for one in later:
            await conn.execute(text(HISTORY), {"ids": [one]})
        scans = (await conn.execute(text(SEQ_SCANS))).scalar_one() - before
        captured = (
            await conn.execute(
                text("SELECT count(*) FROM webhook_outbox WHERE notification_id = ANY(:ids)"),
                {"ids": later},
            )
        ).scalar_one()
        await conn.commit()
    return scans, captured


async def test_a_large_first_call_leaves_no_sequential_plan(fresh_pg: str) -> None:
    url = async_database_url(fresh_pg)
    outcomes = {}
    for revision in ("0014", "head"):
        await asyncio.to_thread(migrate, "tidings.gateway", url, "gateway", revision)
        engine = engine_for(url, "gateway", pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM webhook_outbox"))
                await conn.execute(text("DELETE FROM webhook_endpoints"))
                await conn.execute(text(ENDPOINT), {"id": uuid.uuid4()})
            outcomes[revision] = await _scans_after_a_large_first_call(engine)
        finally:
            await engine.dispose()
    # Before: the plan of the first call scanned the history for every later insert (this is
    # what the head is measured against, so the count below cannot pass by accident).
    assert outcomes["0014"] == (LATER, LATER)
    # The head: the same work, every row captured, and the history never read whole.
    assert outcomes["head"] == (0, LATER)
