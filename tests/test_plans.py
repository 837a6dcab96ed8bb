"""A statement prepared while its table was small is planned again for the table it has now.

PostgreSQL keeps a prepared statement's generic plan after five executions and does not look
again until the table is analysed. Made on a fresh deployment's near-empty tables, the plan
of a batch's ``UPDATE … FROM unnest(…)`` was a hash join over a sequential scan, and every
later batch read the whole table: PostgreSQL's cost per notification grew with the table
(docs/decisions.md, "Plans made for the table as it is"). Tidings' connections plan each
execution for the table as it is (``plan_cache_mode``, core.db.engine_for): this test makes
the plan on ten rows, grows the table to 20,000 unanalysed rows, and counts the rows the next
batch reads."""

from __future__ import annotations

import asyncio
import uuid
from typing import cast

from sqlalchemy import Table, insert, text

from tests.test_bulk import _notification
from tidings.core.bulk import update_rows
from tidings.core.db import engine_for
from tidings.core.migrations import migrate
from tidings.core.settings import async_database_url
from tidings.gateway.models import Notification

NOTES = cast(Table, Notification.__table__)
GROWN = 20_000
GROW = f"""INSERT INTO notifications (id, owner, request_id, body_hash, user_id,
    notification_type, template_code, language, priority, variables, status, correlation_id,
    round, attempt, created_at, updated_at)
    SELECT gen_random_uuid(), 'admin', 'r' || g, 'h', gen_random_uuid(), 'email', 't', 'en', 1,
        '{{}}', 'pending', 'c', 0, 0, now(), now() FROM generate_series(1, {GROWN}) AS g"""
READ = """SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
    FROM pg_stat_xact_user_tables WHERE relname = 'notifications'"""


async def test_a_batch_update_reads_its_rows_not_the_table(fresh_pg: str) -> None:
    url = async_database_url(fresh_pg)
    await asyncio.to_thread(migrate, "tidings.gateway", url, "gateway")
    engine = engine_for(url, "gateway", pool_size=1)
    try:
        async with engine.connect() as conn:  # one connection: its prepared statements
            small = [uuid.uuid4() for _ in range(10)]
            async with conn.begin():
                await conn.execute(insert(NOTES), [_notification(i) for i in small])
            for k in range(8):  # past the five custom plans after which one is kept
                async with conn.begin():
                    await update_rows(
                        conn, NOTES, "id", [{"id": i, "attempt": k} for i in small[:5]]
                    )
            async with conn.begin():
                await conn.execute(text(GROW))
            async with conn.begin():
                await update_rows(conn, NOTES, "id", [{"id": i, "attempt": 9} for i in small[:5]])
                read = (await conn.execute(text(READ))).scalar_one()
                moved = (
                    await conn.execute(text("SELECT count(*) FROM notifications WHERE attempt = 9"))
                ).scalar_one()
    finally:
        await engine.dispose()
    assert moved == 5
    # An index look-up per row of the batch (5); the kept plan read all 20,010 rows.
    assert read < 100, f"the batch of 5 read {read} rows of {GROWN + 10}"
