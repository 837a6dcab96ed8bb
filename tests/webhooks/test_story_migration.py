"""Migration gateway 0012 on both stores: the webhook messages fanned out before it get their
notification's id from their body (a notification event, device.removed), the others none;
the tables are what the models declare; and it goes back down."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from tests.gateway.test_owner_migration import _diff
from tests.helpers import migrated_past
from tidings.core.settings import async_database_url

ENDPOINT = """INSERT INTO webhook_endpoints (id, owner, url, description, events, secret,
    created_at, updated_at) VALUES (:id, 'admin', 'https://x.example/h', '', '["*"]', :secret,
    CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"""

MESSAGE = """INSERT INTO webhook_messages (endpoint_id, webhook_id, event_key, event_type,
    payload, state, attempts, next_attempt_at, created_at) VALUES (:endpoint, :wid, :wid, :type,
    :payload, 'delivered', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"""


@pytest.fixture(scope="module", autouse=True)
def no_endpoint_left() -> None:
    """Not the package's (it starts the whole system to clean up after it): these tests
    make databases of their own."""


def _uuid(conn: Connection, value: uuid.UUID) -> object:
    return value if conn.dialect.name == "postgresql" else value.hex


def _old_rows(conn: Connection, nid: uuid.UUID) -> None:
    endpoint = uuid.uuid4()
    conn.execute(text(ENDPOINT), {"id": _uuid(conn, endpoint), "secret": b"sealed"})
    bodies = {
        "m-delivered": ("notification.delivered", {"notification_id": str(nid), "sequence": 3}),
        "m-device": ("device.removed", {"notification_id": str(nid), "device_id": "d"}),
        "m-user": ("user.unsubscribed", {"user_id": str(uuid.uuid4())}),
        "m-null": ("endpoint.disabled", {"notification_id": None}),
    }
    for wid, (kind, data) in bodies.items():
        payload = orjson.dumps({"type": kind, "timestamp": "t", "data": data})
        params = {"endpoint": _uuid(conn, endpoint), "wid": wid, "type": kind, "payload": payload}
        conn.execute(text(MESSAGE), params)


async def _check(url: str) -> None:
    nid = uuid.uuid4()
    old = functools.partial(_old_rows, nid=nid)
    async with (
        migrated_past("tidings.gateway", url, "gateway", "0011", old) as engine,
        engine.begin() as conn,
    ):
        rows = await conn.execute(text("SELECT webhook_id, notification_id FROM webhook_messages"))
        found = {w: n for w, n in rows.all()}
        expected = _uuid(conn.sync_connection, nid)  # type: ignore[arg-type]
        assert found == {
            "m-delivered": expected,
            "m-device": expected,
            "m-user": None,
            "m-null": None,
        }
        assert await conn.run_sync(_diff) == []


async def test_on_postgres(fresh_pg: str) -> None:
    await _check(async_database_url(fresh_pg))


async def test_on_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
