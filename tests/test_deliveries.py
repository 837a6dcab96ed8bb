"""core.deliveries on PostgreSQL and SQLite: claims, and outcomes of concurrent sends
written together (one transaction per batch) without mixing rows up."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tidings.core.db import open_database
from tidings.core.deliveries import DeliveryStore
from tidings.core.migrations import migrate


@pytest.fixture(params=["postgresql", "sqlite"])
async def store(
    request: pytest.FixtureRequest, fresh_pg: str, tmp_path: Path
) -> AsyncIterator[DeliveryStore]:
    url = (
        fresh_pg.replace("postgresql://", "postgresql+asyncpg://", 1)
        if request.param == "postgresql"
        else f"sqlite+aiosqlite:///{tmp_path}/d.db"
    )
    await asyncio.to_thread(migrate, "tidings.core.deliveries", url, "email")
    db = open_database(url, "email")
    try:
        yield DeliveryStore(db, lease_s=60)
    finally:
        await db.close()


async def test_concurrent_outcomes_land_on_their_own_rows(store: DeliveryStore) -> None:
    ids = [str(uuid.uuid4()) for _ in range(30)]
    claims = await asyncio.gather(*(store.claim(i) for i in ids))
    assert {c.result for c in claims} == {"claimed"}
    before = store._finishes.batches
    # Three kinds of outcome at once: they set different columns.
    await asyncio.wait_for(
        asyncio.gather(
            *(store.mark_sent(i, f"250 ok {i}") for i in ids[:10]),
            *(store.mark_failed(i, f"550 no {i}") for i in ids[10:20]),
            *(store.release(i, f"451 later {i}") for i in ids[20:]),
        ),
        30,
    )
    assert store._finishes.batches - before < 30  # grouped, not one transaction each
    for i in ids[:10]:
        row = await store.get(i)
        assert row is not None and row.state == "sent" and row.reply == f"250 ok {i}"
        assert row.lease_until is None
        again = await store.claim(i)
        assert (again.result, again.reply) == ("sent", f"250 ok {i}")
    for i in ids[10:20]:
        row = await store.get(i)
        assert row is not None and (row.state, row.last_error) == ("failed", f"550 no {i}")
        assert (await store.claim(i)).result == "failed"
    for i in ids[20:]:
        row = await store.get(i)
        assert row is not None and (row.state, row.last_error) == ("pending", f"451 later {i}")
        assert (await store.claim(i)).result == "claimed"  # released: claimable again


async def test_a_claimed_notification_is_busy_for_another_claim(store: DeliveryStore) -> None:
    nid = str(uuid.uuid4())
    assert (await store.claim(nid)).result == "claimed"
    busy = await store.claim(nid)
    assert busy.result == "busy" and 0 < busy.wait_s <= 60


async def test_two_workers_racing_in_groups_claim_each_notification_once(
    store: DeliveryStore,
) -> None:
    """Claims go in one statement per group: two workers (stores of their own) claiming the
    same notifications at once, each also holding a duplicate copy of some, in groups that
    overlap: exactly one claim of each notification wins, the others find it held."""
    url = store.db.engine.url.render_as_string(hide_password=False)
    other = DeliveryStore(open_database(url, "email"), lease_s=60)
    try:
        ids = [str(uuid.uuid4()) for _ in range(20)]
        copies = [*ids, *ids[:5]]  # a redelivered copy beside the first, in the same group
        before = store._claims.batches
        mine, theirs = await asyncio.wait_for(
            asyncio.gather(
                asyncio.gather(*(store.claim(i) for i in copies)),
                asyncio.gather(*(other.claim(i) for i in reversed(copies))),
            ),
            30,
        )
        assert store._claims.batches - before < len(copies)  # grouped, not one each
        claims = [
            *((store, i, c) for i, c in zip(copies, mine, strict=True)),
            *((other, i, c) for i, c in zip(reversed(copies), theirs, strict=True)),
        ]
        for nid in ids:
            won = [(s, c) for s, i, c in claims if i == nid and c.result == "claimed"]
            assert len(won) == 1, (nid, won)
            lost = [c for _, i, c in claims if i == nid and c.result != "claimed"]
            assert lost and all(c.result == "busy" and c.wait_s > 0 for c in lost), lost
            # The winner's token renews its lease.
            winner, claim = won[0]
            await winner.renew(nid, claim.attempts)
    finally:
        await other.db.close()


async def test_a_group_of_outcomes_is_one_statement_a_set_of_columns(
    store: DeliveryStore,
) -> None:
    """On PostgreSQL a group's outcomes of one kind are one UPDATE … FROM unnest (asyncpg's
    executemany is a statement per row); a notification twice in the group gets its last."""
    ids = sorted(str(uuid.uuid4()) for _ in range(12))
    await asyncio.gather(*(store.claim(i) for i in ids))
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            statements.append(statement)

    sync_engine = store.db.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", seen)
    try:
        outcomes = [store.mark_sent(i, f"250 ok {i}") for i in ids]
        await asyncio.wait_for(asyncio.gather(*outcomes), 30)
    finally:
        event.remove(sync_engine, "before_cursor_execute", seen)
    assert 1 <= len(statements) < len(ids)
    if store.db.is_postgres:
        assert all("unnest" in s for s in statements)
    for i in ids:
        row = await store.get(i)
        assert row is not None and (row.state, row.reply) == ("sent", f"250 ok {i}")
        assert row.lease_until is None and row.updated_at.tzinfo is not None
    # The same notification twice in one group: the later outcome is the one written.
    nid = str(uuid.uuid4())
    await store.claim(nid)
    await asyncio.gather(store.release(nid, "first"), store.release(nid, "second"))
    row = await store.get(nid)
    assert row is not None and (row.state, row.last_error) == ("pending", "second")


async def test_a_group_of_mixed_outcomes_is_one_statement_outside_a_transaction(
    store: DeliveryStore,
) -> None:
    """On PostgreSQL sent, failed and released rows of one group are one UPDATE, run on its
    own (autocommit: no BEGIN and COMMIT round trips); each row keeps the columns its own
    outcome does not set (a sent row keeps the error of an earlier attempt)."""
    ids = sorted(str(uuid.uuid4()) for _ in range(12))
    await asyncio.gather(*(store.claim(i) for i in ids))
    await asyncio.gather(*(store.release(i, f"451 earlier {i}") for i in ids))
    await asyncio.gather(*(store.claim(i) for i in ids))
    seen: list[tuple[str, bool]] = []

    def before(conn: Any, _cursor: object, statement: str, *_: object) -> None:
        autocommit = bool(getattr(conn.connection.dbapi_connection, "autocommit", False))
        seen.append((statement.split()[0].upper(), autocommit))

    sync_engine = store.db.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", before)
    batches = store._finishes.batches
    try:
        await asyncio.wait_for(
            asyncio.gather(
                *(store.mark_sent(i, f"250 ok {i}") for i in ids[:4]),
                *(store.mark_failed(i, f"550 no {i}") for i in ids[4:8]),
                *(store.release(i, None) for i in ids[8:]),
            ),
            30,
        )
    finally:
        event.remove(sync_engine, "before_cursor_execute", before)
    groups = store._finishes.batches - batches
    assert 1 <= groups < len(ids)
    if store.db.is_postgres:
        assert seen == [("UPDATE", True)] * groups, seen
    for i in ids[:4]:
        row = await store.get(i)
        assert row is not None and (row.state, row.reply) == ("sent", f"250 ok {i}")
        assert row.last_error == f"451 earlier {i}" and row.lease_until is None
    for i in ids[4:8]:
        row = await store.get(i)
        assert row is not None and (row.state, row.last_error) == ("failed", f"550 no {i}")
        assert row.reply is None
    for i in ids[8:]:
        row = await store.get(i)
        assert row is not None and (row.state, row.last_error) == ("pending", None)
