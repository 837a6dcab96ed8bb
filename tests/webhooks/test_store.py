"""The worker's grouped writes (webhooks.store), against the session's PostgreSQL: many
attempts' outcomes in one call, one statement per kind of write (no attempt row for a
success), each message and endpoint
left as one attempt at a time would have left it; a release under a lease no longer ours
changes nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import event, insert, select

from tests.system import System
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import delete_all, register
from tidings.core.db import utcnow
from tidings.webhooks.attempts import Claimed, Outcome, Room, Settled
from tidings.webhooks.store import ATTEMPTS, ENDPOINTS, MESSAGES, OUTBOX, WebhookStore

N = 6


async def captured(system: System, store: WebhookStore, n: int) -> dict[str, Any]:
    """``n`` captured events in the outbox, for one fresh endpoint (returned)."""
    await delete_all(system.gateway)
    endpoint = await register(system.gateway, Receiver(), ["*"])
    now = utcnow()
    rows = [
        {
            "event_id": None,
            "event_type": "endpoint.disabled",
            "owner": "admin",
            "extra": {"n": i},
            "created_at": now,
        }
        for i in range(n)
    ]
    async with store.db.engine.begin() as conn:
        await conn.execute(insert(OUTBOX), rows)
    return endpoint


async def claimed_messages(system: System, store: WebhookStore, n: int) -> list[Claimed]:
    """``n`` captured events fanned out to one fresh endpoint and claimed (no worker runs in
    this module)."""
    endpoint = await captured(system, store, n)
    fanned = await store.fan_out(100)  # no room given: written due, none claimed
    assert (fanned.events, fanned.made, fanned.claimed) == (n, n, [])
    claimed = await store.claim({}, 100, 100, 60.0)
    assert len(claimed) == n
    assert {m.endpoint_id for m in claimed} == {uuid.UUID(endpoint["endpoint_id"])}
    return sorted(claimed, key=lambda m: m.id)


def counting(store: WebhookStore) -> list[str]:
    """The statements the store's engine runs from now on (SQLAlchemy's own event)."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.split()[0].upper())

    event.listen(store.db.engine.sync_engine, "before_cursor_execute", before)
    return seen


async def test_many_outcomes_are_written_together(system: System, store: WebhookStore) -> None:
    messages = await claimed_messages(system, store, N)
    later = utcnow() + dt.timedelta(minutes=5)
    ok = Outcome(204, 3.0, None, "")
    busy = Outcome(503, 4.0, None, "try later")
    items = [Settled(m, ok, "delivered", None, True) for m in messages[:3]]
    items += [Settled(m, busy, "pending", later, False) for m in messages[3:5]]
    items += [
        Settled(messages[5], Outcome(None, 9.0, "ReadTimeout: …", None), "failed", None, False)
    ]
    seen = counting(store)
    since = await store.record_many(items)
    # One multi-row insert (the attempts that did not succeed), one update of every message,
    # one of the endpoint's success clock; a success in the group: no failing clock.
    assert seen.count("INSERT") == 1
    assert seen.count("UPDATE") == 2, seen
    assert since == [None] * N
    ids = [m.id for m in messages]
    async with store.db.engine.connect() as conn:
        rows = {r.id: r for r in await conn.execute(select(MESSAGES).where(MESSAGES.c.id.in_(ids)))}
        tried = (
            await conn.execute(
                select(ATTEMPTS.c.message_id, ATTEMPTS.c.status_code).where(
                    ATTEMPTS.c.message_id.in_(ids)
                )
            )
        ).all()
        endpoint = (
            await conn.execute(select(ENDPOINTS).where(ENDPOINTS.c.id == messages[0].endpoint_id))
        ).one()
    # A success is no attempt row: its figures are on the message (migration gateway 0014).
    assert sorted(tried) == sorted(
        (m.id, code) for m, code in zip(messages[3:], [503, 503, None], strict=True)
    )
    assert all(
        (rows[i].delivered_duration_ms, rows[i].delivered_excerpt) == (3.0, "") for i in ids[:3]
    )
    assert all(rows[i].delivered_duration_ms is None for i in ids[3:])
    assert all(rows[i].attempts == 1 for i in ids)
    assert [rows[i].state for i in ids] == ["delivered"] * 3 + ["pending"] * 2 + ["failed"]
    assert all(rows[i].delivered_at is not None and rows[i].last_status == 204 for i in ids[:3])
    assert all(rows[i].next_attempt_at == later and rows[i].last_status == 503 for i in ids[3:5])
    assert rows[ids[5]].last_error == "ReadTimeout: …" and rows[ids[5]].delivered_at is None
    assert endpoint.last_success_at is not None and endpoint.failing_since is None

    # Failures alone start the endpoint's failing clock, and say since when.
    again = await store.claim({}, 100, 100, 60.0)
    assert again == []  # the retried ones are not due for five minutes
    since = await store.record_many(
        [Settled(m, busy, "pending", later, False) for m in messages[3:5]]
    )
    assert since[0] is not None and since == [since[0]] * 2


async def test_a_release_under_a_lease_no_longer_ours_changes_nothing(
    system: System, store: WebhookStore
) -> None:
    first, second = await claimed_messages(system, store, 2)
    soon = utcnow() + dt.timedelta(seconds=30)
    stale = first.lease_until - dt.timedelta(seconds=1)  # another claim's lease
    await store.release_many([(first.id, stale, soon), (second.id, second.lease_until, soon)])
    async with store.db.engine.connect() as conn:
        due = dict(
            (
                await conn.execute(
                    select(MESSAGES.c.id, MESSAGES.c.next_attempt_at).where(
                        MESSAGES.c.id.in_([first.id, second.id])
                    )
                )
            ).all()
        )
    assert due[first.id] == first.lease_until
    assert due[second.id] == soon


async def test_the_fan_out_claims_what_there_is_room_for_as_it_writes(
    system: System, store: WebhookStore
) -> None:
    """A first attempt needs no claim: the fan-out writes the messages the worker has room
    for already leased to it (as a claim would have), and the rest due, for a claim."""
    endpoint_id = uuid.UUID((await captured(system, store, N))["endpoint_id"])
    seen = counting(store)
    fanned = await store.fan_out(100, Room({endpoint_id: 2}, default=40, limit=100, lease_s=60))
    assert seen.count("UPDATE") == 0, seen  # no claim statement
    assert (fanned.events, fanned.made, len(fanned.claimed)) == (N, N, 2)
    assert fanned.claimed[0].lease_until > utcnow() + dt.timedelta(seconds=50)
    assert set(fanned.endpoints) == {endpoint_id}
    # The leased ones are not claimed again; the rest are due.
    rest = await store.claim({}, 100, 100, 60.0)
    assert len(rest) == N - 2
    assert not {m.id for m in rest} & {m.id for m in fanned.claimed}
    async with store.db.engine.connect() as conn:
        due = dict(
            (
                await conn.execute(
                    select(MESSAGES.c.id, MESSAGES.c.next_attempt_at).where(
                        MESSAGES.c.id.in_([m.id for m in fanned.claimed])
                    )
                )
            ).all()
        )
    assert due == {m.id: m.lease_until for m in fanned.claimed}
    # An event twice (device.removed, reported by each attempt that found the device): one
    # message, and only it is claimed.
    removed = {
        "event_id": None,
        "event_type": "device.removed",
        "owner": "admin",
        "extra": {"notification_id": str(uuid.uuid4()), "device_id": str(uuid.uuid4())},
        "created_at": utcnow(),
    }
    async with store.db.engine.begin() as conn:
        await conn.execute(insert(OUTBOX), [removed, removed])
    twice = await store.fan_out(100, Room({}, default=40, limit=100, lease_s=60))
    assert (twice.events, twice.made, len(twice.claimed)) == (2, 1, 1)
