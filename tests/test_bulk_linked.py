"""core.bulk.insert_linked on both stores: parents inserted unless their key is taken (by a
row already there or an earlier row of the batch), linked rows written only with an inserted
parent, the values returned by parent, a JSON column's value kept; all or nothing; on
PostgreSQL in one statement."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, event, func, insert, select
from sqlalchemy.exc import IntegrityError

from tidings.core.bulk import Linked, insert_linked
from tidings.core.db import open_database, utcnow
from tidings.core.migrations import migrate
from tidings.core.settings import async_database_url
from tidings.gateway.models import Notification, NotificationEvent, OutboxMessage

NOTES = cast(Table, Notification.__table__)
EVENTS = cast(Table, NotificationEvent.__table__)
OUTBOX = cast(Table, OutboxMessage.__table__)


def _note(i: uuid.UUID, request_id: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": i,
        "owner": "admin",
        "request_id": request_id,
        "body_hash": "h",
        "user_id": i,
        "notification_type": "email",
        "template_code": "t",
        "language": "en",
        "priority": 1,
        "variables": {"name": "Zoë", "n": [1, {"a": None}]},
        "metadata": None,
        "status": "pending",
        "error": None,
        "correlation_id": "c",
        "round": 0,
        "attempt": 0,
        "created_at": now,
        "updated_at": now,
    }


def _event(i: uuid.UUID, status: str | None = "pending") -> dict[str, Any]:
    return {"notification_id": i, "status": status, "detail": "accepted", "created_at": utcnow()}


def _message(i: uuid.UUID) -> dict[str, Any]:
    now = utcnow()
    return {
        "notification_id": i,
        "routing_key": "email",
        "payload": i.bytes,
        "correlation_id": "c",
        "created_at": now,
        "available_at": now,
    }


async def _check(url: str) -> None:
    await asyncio.to_thread(migrate, "tidings.gateway", url, "gateway")
    db = open_database(url, "gateway")
    statements: list[str] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        taken, new, twin = (uuid.uuid4() for _ in range(3))
        async with db.engine.begin() as conn:
            await conn.execute(insert(NOTES), [_note(taken, "r-taken")])
        statements.clear()
        ids = [taken, new, twin]
        rows = [_note(uuid.uuid4(), "r-taken"), _note(new, "r-new"), _note(twin, "r-new")]
        ids[0] = rows[0]["id"]
        inserted, [returned] = await insert_linked(
            db,
            NOTES,
            rows,
            conflict=("owner", "request_id"),
            linked=[
                Linked(EVENTS, "notification_id", [_event(i) for i in ids]),
                Linked(OUTBOX, "notification_id", [_message(i) for i in ids], returning="id"),
            ],
        )
        if db.is_postgres:
            assert len(statements) == 1, statements  # one round trip, no BEGIN/COMMIT
        assert inserted == {new}  # the key already there, and the batch's second use of one
        async with db.sessions() as session:
            stored = await session.get(Notification, new)
            assert stored is not None
            assert stored.variables == {"name": "Zoë", "n": [1, {"a": None}]}
            assert stored.extra is None
            events = (await session.execute(select(EVENTS.c.notification_id))).scalars().all()
            assert list(events) == [new]
            messages = (await session.execute(select(OUTBOX.c.notification_id, OUTBOX.c.id))).all()
            assert {n: i for n, i in messages} == returned == {new: returned[new]}
        # All or nothing: a linked row the table refuses (no status) writes no parent either.
        refused = uuid.uuid4()
        with pytest.raises(IntegrityError):
            await insert_linked(
                db,
                NOTES,
                [_note(refused, "r-refused")],
                conflict=("owner", "request_id"),
                linked=[Linked(EVENTS, "notification_id", [_event(refused, None)])],
            )
        async with db.engine.connect() as conn:
            count = await conn.execute(select(func.count()).select_from(NOTES))
            assert count.scalar_one() == 2  # taken and new
    finally:
        await db.close()


async def test_on_postgres(fresh_pg: str) -> None:
    await _check(async_database_url(fresh_pg))


async def test_on_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
