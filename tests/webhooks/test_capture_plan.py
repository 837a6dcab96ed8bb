"""The capture trigger's plan (migration gateway 0015): its rule read the whole history at
every statement once a large first call had planned it (PL/pgSQL keeps a connection's plan),
or once the history had grown without statistics. Now each statement reads the rows of its
own notifications only. Counted as history tuples read in the transaction's own statistics
(pg_stat_xact_user_tables: no flush delay), on the revision before and on the head, for the
same work, and the same rows captured."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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
    SELECT u, :status, 'x', now() FROM unnest(CAST(:ids AS uuid[])) AS u"""
READ = """SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
    FROM pg_stat_xact_user_tables WHERE relname = 'notification_events'"""

FIRST = 200  # the first call's notifications: a bench's first batch, on an empty history
STATEMENTS = 30  # batches after it, on the same connection
ROWS = 10  # notifications per batch
LIFE = ("pending", "queued", "delivered")  # each notification's history, a statement each


@pytest.fixture(scope="module", autouse=True)
def no_endpoint_left() -> None:
    """Not the package's: this test makes a database of its own."""


async def _batch(conn: AsyncConnection, ids: list[uuid.UUID]) -> None:
    await conn.execute(text(NOTIFICATIONS), {"ids": ids})
    for status in LIFE:
        await conn.execute(text(HISTORY), {"ids": ids, "status": status})


async def _reads_after_a_large_first_call(engine: AsyncEngine) -> tuple[int, int]:
    """(history tuples read, rows captured) for STATEMENTS batches after a FIRST one, all on
    one new connection (the kept plan is the connection's)."""
    async with engine.connect() as conn:
        await _batch(conn, [uuid.uuid4() for _ in range(FIRST)])  # the function planned here
        await conn.commit()
        before = (await conn.execute(text(READ))).scalar_one()
        later: list[uuid.UUID] = []
        for _ in range(STATEMENTS):
            ids = [uuid.uuid4() for _ in range(ROWS)]
            await _batch(conn, ids)
            later += ids
        read = (await conn.execute(text(READ))).scalar_one() - before
        captured = await conn.execute(
            text("SELECT count(*) FROM webhook_outbox WHERE notification_id = ANY(:ids)"),
            {"ids": later},
        )
        outcome = read, captured.scalar_one()
        await conn.commit()
    return outcome


async def test_a_statement_reads_its_own_notifications_history_only(fresh_pg: str) -> None:
    url = async_database_url(fresh_pg)
    outcomes = {}
    for revision in ("0014", "head"):
        await asyncio.to_thread(migrate, "tidings.gateway", url, "gateway", revision)
        engine = engine_for(url, "gateway", pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(ENDPOINT), {"id": uuid.uuid4()})
            outcomes[revision] = await _reads_after_a_large_first_call(engine)
            async with engine.begin() as conn:  # the next revision starts from the same
                await conn.execute(text("TRUNCATE notifications, webhook_outbox CASCADE"))
                await conn.execute(text("DELETE FROM webhook_endpoints"))
        finally:
            await engine.dispose()
    later_rows = STATEMENTS * ROWS * len(LIFE)
    captured = STATEMENTS * ROWS * 2  # queued and delivered; a pending row is no event
    # Before: the kept plan read the whole history (FIRST's rows and more) at each statement;
    # this is what the head is measured against, so the bound below cannot pass by accident.
    read_0014, captured_0014 = outcomes["0014"]
    assert captured_0014 == captured
    assert read_0014 > STATEMENTS * len(LIFE[1:]) * FIRST * len(LIFE)
    # The head: the same rows captured, a few history rows read per row written (each
    # notification's own, twice: the rule's two look-ups), whatever the history's size.
    read_head, captured_head = outcomes["head"]
    assert captured_head == captured
    assert read_head <= 10 * later_rows, outcomes
