"""core.bulk on both stores: a batch of rows in one statement, in order, each row's values
where they belong, an upsert replacing the row of a key already there; on PostgreSQL the
capture trigger fires once for the batch (it fired once per row of an ``executemany``, asyncpg
running one statement per row)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.core.bulk import insert_rows, update_rows
from tidings.core.db import engine_for, utcnow
from tidings.core.migrations import migrate
from tidings.core.settings import async_database_url
from tidings.gateway.models import Notification, NotificationEvent

NOTES = cast(Table, Notification.__table__)
EVENTS = cast(Table, NotificationEvent.__table__)
ENDPOINT = """INSERT INTO webhook_endpoints (id, owner, url, description, events, secret,
    created_at, updated_at) VALUES (:id, 'admin', 'https://x.example/h', '', '["*"]', :secret,
    CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"""
CALLS = """SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
    WHERE funcname = 'webhook_capture'"""
N = 10


def _notification(i: uuid.UUID) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": i,
        "owner": "admin",
        "request_id": str(i),
        "body_hash": "h",
        "user_id": i,
        "notification_type": "email",
        "template_code": "t",
        "language": "en",
        "priority": 1,
        "variables": {},
        "status": "pending",
        "correlation_id": "c",
        "round": 0,
        "attempt": 0,
        "created_at": now,
        "updated_at": now,
    }


async def _batch(conn: AsyncConnection, ids: list[uuid.UUID]) -> None:
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        await conn.execute(text("SET LOCAL track_functions = 'pl'"))
    now = utcnow()
    await insert_rows(
        conn,
        EVENTS,
        [
            {
                "notification_id": i,
                "status": "queued",
                "detail": f"d{k}",
                "error": None,
                "attempt": k,
                "created_at": now,
            }
            for k, i in enumerate(ids)
        ],
    )
    if postgres:
        assert (await conn.execute(text(CALLS))).scalar_one() == 1
    written = (
        await conn.execute(
            select(EVENTS.c.notification_id, EVENTS.c.detail, EVENTS.c.attempt).order_by(
                EVENTS.c.id
            )
        )
    ).all()
    assert [tuple(r) for r in written] == [(i, f"d{k}", k) for k, i in enumerate(ids)]
    captured = await conn.execute(text("SELECT count(*) FROM webhook_outbox"))
    assert captured.scalar_one() == N  # the trigger saw every row of the one statement
    await update_rows(
        conn,
        NOTES,
        "id",
        [{"id": i, "status": "failed", "error": f"e{k}", "attempt": k} for k, i in enumerate(ids)],
    )
    moved = (await conn.execute(select(NOTES.c.id, NOTES.c.error, NOTES.c.attempt))).all()
    assert sorted(tuple(r) for r in moved) == sorted((i, f"e{k}", k) for k, i in enumerate(ids))
    await insert_rows(conn, EVENTS, [])  # nothing to write: no statement
    # upsert: a row whose key is in the table replaces that row's other columns; a new key
    # is inserted; both in the one statement.
    first = (await conn.execute(select(EVENTS.c.id).order_by(EVENTS.c.id).limit(1))).scalar_one()

    def event(i: int, detail: str) -> dict[str, Any]:
        return {
            "id": i,
            "notification_id": ids[0],
            "status": "sent",
            "detail": detail,
            "created_at": now,
        }

    await insert_rows(
        conn, EVENTS, [event(first, "again"), event(first + 1000, "new")], upsert=("id",)
    )
    after = (
        await conn.execute(
            select(EVENTS.c.id, EVENTS.c.detail).where(EVENTS.c.id.in_([first, first + 1000]))
        )
    ).all()
    assert sorted(tuple(r) for r in after) == [(first, "again"), (first + 1000, "new")]
    with pytest.raises(IntegrityError):  # without upsert the same key is refused
        async with conn.begin_nested():
            await insert_rows(conn, EVENTS, [event(first, "twice")])
    with pytest.raises(ValueError, match="same columns"):
        await insert_rows(conn, EVENTS, [{"status": "a"}, {"detail": "b"}])


async def _check(url: str) -> None:
    await asyncio.to_thread(migrate, "tidings.gateway", url, "gateway")
    engine = engine_for(url, "gateway", pool_size=1)
    ids = sorted(uuid.uuid4() for _ in range(N))
    try:
        async with engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            endpoint = uuid.uuid4()
            await conn.execute(
                text(ENDPOINT), {"id": endpoint if postgres else endpoint.hex, "secret": b"s"}
            )
            await conn.execute(insert(NOTES), [_notification(i) for i in ids])
            await _batch(conn, ids)
    finally:
        await engine.dispose()


async def test_on_postgres(fresh_pg: str) -> None:
    await _check(async_database_url(fresh_pg))


async def test_on_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
