"""Migration gateway 0014 on both stores, and the outcomes written since: a success is no
attempt row, its duration and excerpt are on its message, and the API's log shows it last;
a message delivered before the migration keeps its attempt row and is not shown twice; the
tables are what the models declare; and it goes back down."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection

from tests.gateway.test_owner_migration import _diff
from tests.helpers import migrated_past
from tests.webhooks.test_story_migration import ENDPOINT, _uuid
from tidings.core.db import open_database, utcnow
from tidings.core.settings import async_database_url
from tidings.webhooks.attempts import Claimed, Outcome, Settled
from tidings.webhooks.endpoints import message_out
from tidings.webhooks.models import WebhookMessage
from tidings.webhooks.store import ATTEMPTS, MESSAGES, WebhookStore

OLD_MESSAGE = """INSERT INTO webhook_messages (endpoint_id, webhook_id, event_key, event_type,
    payload, state, attempts, next_attempt_at, last_status, delivered_at, created_at)
    VALUES (:endpoint, 'm-old', 'k-old', 'notification.delivered', :payload, 'delivered', 1,
    CURRENT_TIMESTAMP, 200, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"""
OLD_ATTEMPT = """INSERT INTO webhook_attempts (message_id, endpoint_id, at, status_code,
    duration_ms, response_excerpt) SELECT id, endpoint_id, CURRENT_TIMESTAMP, 200, 5.0, 'ok'
    FROM webhook_messages WHERE webhook_id = 'm-old'"""

ENDPOINT_ID = uuid.uuid4()


@pytest.fixture(scope="module", autouse=True)
def no_endpoint_left() -> None:
    """Not the package's: these tests make databases of their own."""


def _old_rows(conn: Connection) -> None:
    conn.execute(text(ENDPOINT), {"id": _uuid(conn, ENDPOINT_ID), "secret": b"sealed"})
    conn.execute(text(OLD_MESSAGE), {"endpoint": _uuid(conn, ENDPOINT_ID), "payload": b"{}"})
    conn.execute(text(OLD_ATTEMPT))


async def _check(url: str) -> None:
    async with migrated_past("tidings.gateway", url, "gateway", "0013", _old_rows) as engine:
        async with engine.begin() as conn:
            assert await conn.run_sync(_diff) == []
            now = utcnow()
            made = await conn.execute(
                insert(MESSAGES).returning(MESSAGES.c.id),
                [
                    {
                        "endpoint_id": ENDPOINT_ID,
                        "webhook_id": f"m-{i}",
                        "event_key": f"k-{i}",
                        "event_type": "notification.queued",
                        "payload": b"{}",
                        "state": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                    for i in range(2)
                ],
            )
            ids = [row.id for row in made]
        db = open_database(url, "gateway")
        try:
            claimed = [
                Claimed(i, ENDPOINT_ID, f"m-{k}", b"{}", 0, now, now) for k, i in enumerate(ids)
            ]
            later = now + dt.timedelta(minutes=5)
            await WebhookStore(db).record_many(
                [
                    Settled(claimed[0], Outcome(204, 3.5, None, "fine"), "delivered", None, True),
                    Settled(claimed[1], Outcome(503, 4.0, None, "busy"), "pending", later, False),
                ]
            )
            async with db.sessions() as session:
                messages = {
                    m.webhook_id: m for m in (await session.scalars(select(WebhookMessage))).all()
                }
                tried = (
                    await session.execute(select(ATTEMPTS.c.message_id, ATTEMPTS.c.status_code))
                ).all()
        finally:
            await db.close()
    old_id = messages["m-old"].id
    # The success is no attempt row; the failure and the old message's success are.
    assert sorted(tried) == sorted([(old_id, 200), (ids[1], 503)])
    done = message_out(messages["m-0"], [])
    assert [
        (a["status_code"], a["duration_ms"], a["response_excerpt"]) for a in done["attempt_log"]
    ] == [(204, 3.5, "fine")]
    assert (done["state"], done["attempts"], done["last_status"]) == ("delivered", 1, 204)
    waiting = messages["m-1"]
    assert (waiting.state, waiting.last_status, waiting.delivered_duration_ms) == (
        "pending",
        503,
        None,
    )
    # Delivered before 0014: its attempt row is its log, once.
    assert messages["m-old"].delivered_duration_ms is None
    assert message_out(messages["m-old"], [])["attempt_log"] == []


async def test_on_postgres(fresh_pg: str) -> None:
    await _check(async_database_url(fresh_pg))


async def test_on_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
