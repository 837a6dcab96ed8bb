"""Migration 0007 (owners) on both stores: notifications from before belong to the admin, a
request_id is unique per owner only, the tables are what the models declare, and it goes
back down."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from tests.helpers import migrated_past
from tidings.core.settings import async_database_url
from tidings.gateway.models import GatewayBase
from tidings.webhooks.models import WebhookBase

_ROW = """INSERT INTO notifications (id, owner, request_id, body_hash, user_id,
    notification_type, template_code, language, priority, variables, status,
    correlation_id, round, attempt, created_at, updated_at)
    VALUES (:id, :owner, :rid, 'h', :user, 'email', 't', 'en', 5, '{}', 'pending', 'c', 0, 0,
    CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"""


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"include_schemas": False})
    # The gateway's schema holds the webhooks' tables too (their own metadata, the same
    # migrations).
    return list(compare_metadata(context, [GatewayBase.metadata, WebhookBase.metadata]))  # type: ignore[arg-type]


def _ids(conn: Connection) -> dict[str, Any]:
    # Uuid columns: a UUID for asyncpg, the 32 hex digits SQLite stores.
    made = {"id": uuid.uuid4(), "user": uuid.uuid4()}
    return made if conn.dialect.name == "postgresql" else {k: v.hex for k, v in made.items()}


def _insert(conn: Connection, owner: str, rid: str) -> None:
    conn.execute(text(_ROW), {**_ids(conn), "owner": owner, "rid": rid})


def _old_row(conn: Connection) -> None:
    """A notification written before owners (at 0006, without the column)."""
    old = _ROW.replace(":owner, ", "").replace("owner, ", "")
    conn.execute(text(old), {**_ids(conn), "rid": "old-1"})


async def _check(url: str) -> None:
    async with migrated_past("tidings.gateway", url, "gateway", "0006", _old_row) as engine:
        async with engine.begin() as conn:
            owners = (await conn.execute(text("SELECT owner FROM notifications"))).scalars()
            assert list(owners) == ["admin"]
            assert await conn.run_sync(_diff) == []
            # Another owner may use the same request_id; the same owner may not.
            await conn.run_sync(lambda c: _insert(c, "key-b", "old-1"))
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: _insert(c, "key-b", "old-1"))
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM notifications WHERE owner = 'key-b'"))


async def test_on_postgres(fresh_pg: str) -> None:
    await _check(async_database_url(fresh_pg))


async def test_on_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
