"""Many notifications in the gateway's schema at once, for the listing plan tests (the plan,
not the time, is what they check)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from tidings.core.migrations import migrate
from tidings.core.settings import async_database_url


async def notifications_table(database_url: str, rows: int, user: uuid.UUID) -> asyncpg.Connection:
    """The gateway's tables migrated and ``rows`` notifications made in one statement (one in
    a thousand for ``user``, one in ten push, five statuses, a second apart, newest first),
    analysed; the connection is the caller's to close."""
    await asyncio.to_thread(migrate, "tidings.gateway", async_database_url(database_url), "gateway")
    conn = await asyncpg.connect(database_url)
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
            user,
            rows,
        )
        await conn.execute("ANALYZE gateway.notifications")
    except BaseException:
        await conn.close()
        raise
    return conn
