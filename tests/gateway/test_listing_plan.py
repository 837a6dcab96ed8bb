"""At a million notifications, every filtered, newest-first page is an index scan (shown with
EXPLAIN on PostgreSQL; the plan, not the time, is what is checked)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import pytest
from sqlalchemy.dialects import postgresql

from tidings.core.migrations import migrate
from tidings.core.settings import async_database_url
from tidings.gateway.listing import page_query
from tidings.gateway.schemas import NotificationFilter

ROWS = 1_000_000
USER = uuid.UUID("00000000-0000-0000-0000-000000000042")


@pytest.mark.timeout(300)
async def test_filtered_pages_are_index_scans_at_a_million_rows(fresh_pg: str) -> None:
    await asyncio.to_thread(migrate, "tidings.gateway", async_database_url(fresh_pg), "gateway")
    conn = await asyncpg.connect(fresh_pg)
    try:
        await conn.execute(
            """
            INSERT INTO gateway.notifications (id, request_id, body_hash, user_id,
                notification_type, template_code, language, priority, variables, metadata,
                status, error, correlation_id, round, attempt, created_at, updated_at)
            SELECT gen_random_uuid(), 'req-' || i, md5(i::text),
                CASE WHEN i % 1000 = 0 THEN $1::uuid ELSE gen_random_uuid() END,
                CASE WHEN i % 10 = 0 THEN 'push' ELSE 'email' END,
                'template-' || (i % 50), 'en', 5, '{}'::json, NULL,
                (ARRAY['pending', 'delivered', 'delivered', 'failed', 'skipped'])[1 + i % 5],
                NULL, 'c', 0, 0,
                now() - (i || ' seconds')::interval, now()
            FROM generate_series(1, $2) AS i
            """,
            USER,
            ROWS,
        )
        await conn.execute("ANALYZE gateway.notifications")
        week_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
        filters = [
            NotificationFilter(),
            NotificationFilter(user_id=USER),
            NotificationFilter(status="failed"),
            NotificationFilter(notification_type="push", page=3),
            NotificationFilter(template_code="template-7", limit=100),
            NotificationFilter(request_id="req-123456"),
            NotificationFilter(status="pending", created_after=week_ago),
        ]
        # An API key without notifications:read_all sees only its own (the owner's index).
        owned = [(f, None) for f in filters] + [
            (NotificationFilter(), "admin"),
            (NotificationFilter(request_id="req-123456"), "admin"),
            (NotificationFilter(status="failed"), "admin"),
        ]
        for f, owner in owned:
            sql = str(
                page_query(f, owner).compile(
                    dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
                )
            ).replace("notifications", "gateway.notifications")
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql))
            print(f"{f.model_dump(exclude_defaults=True)}:\n{plan}\n")
            assert "Seq Scan" not in plan, plan
            assert "Index" in plan, plan
    finally:
        await conn.close()
