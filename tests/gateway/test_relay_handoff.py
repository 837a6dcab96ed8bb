"""The relay publishes what the accept transaction wrote from memory, handed over after the
commit, without reading the outbox back; the poll is the safety net: a row whose hand-over
is lost (a crash between commit and publish) stays in the outbox, and the poll publishes it,
once."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
from sqlalchemy import event, text

from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System
from tidings.core.topology import BULK_ROUTES
from tidings.gateway.relay import HANDED_MAX_BATCHES, OutboxRelay, Written

# A statement that reads the outbox (the hand-over's DELETE locks its rows by id in a
# sub-select: that reads nothing back).
_OUTBOX_READ = re.compile(r"^\s*SELECT\b.*\bFROM\s+(\w+\.)?outbox\b", re.S | re.I)


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, Any]:
    return {"relay_poll_s": 3600.0}  # the poll out of the way: only a hand-over publishes


@pytest.fixture
def statements(system: System) -> Iterator[list[str]]:
    """Every SQL statement the gateway sends while the test runs."""
    engine = system.apps["gateway"].state.gateway.relay.db.engine.sync_engine
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def _send(system: System) -> str:
    user = await create_user(system.gateway)
    template = await create_template(system.gateway)
    body = notification(user["user_id"], template["code"])
    answer = await system.gateway.post("/api/v1/notifications/", json=body)
    assert answer.status_code == 202, answer.text
    notification_id: str = answer.json()["data"]["notification_id"]
    return notification_id


async def test_accepted_rows_are_published_without_reading_the_outbox(
    system: System, statements: list[str]
) -> None:
    nid = await _send(system)
    done = await wait_for_status(system.gateway, nid, "delivered")
    assert [h["status"] for h in done["history"]] == ["pending", "queued", "delivered"]
    assert (await system.smtp.next()).message["Message-ID"] == f"<{nid}@tidings.localhost>"
    assert not [s for s in statements if _OUTBOX_READ.search(s)], "the outbox was read back"


async def test_a_lost_hand_over_is_published_by_the_poll_once(system: System) -> None:
    relay: OutboxRelay = system.apps["gateway"].state.gateway.relay
    await relay.stop()  # as if the process died between its commit and the publish
    try:
        lost = await _send(system)
        assert (await system.gateway.get(f"/api/v1/notifications/{lost}/")).json()["data"][
            "status"
        ] == "pending"
        # Another relay (a replica's, or this one restarted) finds the row by its poll.
        other = OutboxRelay(relay.db, relay.bus, batch_size=relay.batch_size, poll_s=3600)
        assert await other.flush() == 1
        done = await wait_for_status(system.gateway, lost, "delivered")
        assert (await system.smtp.next()).message["Message-ID"] == f"<{lost}@tidings.localhost>"
    finally:
        relay.start()
    # The first relay, back, still holds the row it was handed: it finds it gone from the
    # outbox and publishes nothing. A later notification goes after it, in order.
    later = await _send(system)
    await wait_for_status(system.gateway, later, "delivered")
    assert (await system.smtp.next()).message["Message-ID"] == f"<{later}@tidings.localhost>"
    assert system.smtp.arrivals.empty(), "the lost one was sent once"
    history = (await system.gateway.get(f"/api/v1/notifications/{lost}/")).json()["data"]
    assert [h["status"] for h in history["history"]] == ["pending", "queued", "delivered"]
    assert done["status"] == "delivered"


def test_handed_rows_held_are_bounded_the_rest_left_to_the_poll() -> None:
    """A relay that cannot publish (its broker away) holds at most HANDED_MAX_BATCHES
    batches of handed rows; the rows it does not hold are in the outbox for its poll."""
    relay = OutboxRelay(cast(Any, None), cast(Any, None), batch_size=10, poll_s=1)
    now = dt.datetime.now(dt.UTC)
    rows = [
        Written(i, uuid.uuid4(), "email.normal", b"{}", "c", now, now)
        for i in range(10 * HANDED_MAX_BATCHES + 25)
    ]
    relay.hand(rows[:15])
    relay.hand(rows[15:])
    assert relay.held == 10 * HANDED_MAX_BATCHES


async def _outbox_row(relay: OutboxRelay, notification_id: str) -> Written:
    async with relay.db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT id, notification_id, routing_key, payload, correlation_id,"
                    " created_at, available_at FROM gateway.outbox WHERE notification_id = :n"
                ),
                {"n": uuid.UUID(notification_id)},
            )
        ).one()
    return Written(*row)


async def test_a_handed_row_another_relays_poll_holds_is_skipped_not_waited_for(
    system: System,
) -> None:
    """Another relay's poll locks its batch until the broker confirms it. A handed row in
    that batch is the poll's to publish: the hand-over skips it at once. (Waiting for the
    lock went past the statement timeout under load, which counts as the database being
    away: the gateway's database breaker opened and answered 503s.)"""
    relay: OutboxRelay = system.apps["gateway"].state.gateway.relay
    await relay.stop()
    try:
        nid = await _send(system)
        row = await _outbox_row(relay, nid)
        async with relay.db.engine.connect() as poll, poll.begin():
            await poll.execute(
                text("SELECT id FROM gateway.outbox WHERE id = :i FOR UPDATE"), {"i": row.id}
            )
            assert await relay.publish_written([row]) == 0  # skipped, not waited for
        other = OutboxRelay(relay.db, relay.bus, batch_size=relay.batch_size, poll_s=3600)
        assert await other.flush() == 1  # the poll (its lock released) publishes it, once
        await wait_for_status(system.gateway, nid, "delivered")
        assert (await system.smtp.next()).message["Message-ID"] == f"<{nid}@tidings.localhost>"
    finally:
        relay.start()
    assert system.smtp.arrivals.empty()


async def test_each_relays_poll_takes_its_own_lane_only(system: System) -> None:
    """The accept path's relay and the broadcasts' relay poll disjoint rows (gateway.app)."""
    relay: OutboxRelay = system.apps["gateway"].state.gateway.relay
    await relay.stop()
    try:
        nid = await _send(system)
        lanes = tuple(BULK_ROUTES.values())
        bulk = OutboxRelay(relay.db, relay.bus, batch_size=10, poll_s=3600, routes=lanes, bulk=True)
        assert await bulk.flush() == 0  # a transactional row is not the bulk lane's
        accept = OutboxRelay(relay.db, relay.bus, batch_size=10, poll_s=3600, routes=lanes)
        assert await accept.flush() == 1
        await wait_for_status(system.gateway, nid, "delivered")
        await system.smtp.next()
    finally:
        relay.start()
