"""core.flow's DeliveryFlow on real PostgreSQL and RabbitMQ: no message loops, no failure goes
unreported, and leases live on the database's clock.

The channel's ``deliver`` is the test's (or a real piece of a worker's, as the push worker's
``content_for``), so each test says exactly what one attempt does."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.smtp_peer import SmtpPeer
from tidings.core import jsons
from tidings.core.bus import BusMessage
from tidings.core.bus.rabbit import RabbitBus
from tidings.core.db import open_database
from tidings.core.deliveries import DeliveryStore, LeaseLost
from tidings.core.errors import DependencyUnavailable, NoRecipient, PermanentError, TransientError
from tidings.core.flow import DeliveryFlow, Unfinished, renew_lease
from tidings.core.messages import NotificationMessage, Recipient, StatusEvent, now_ms
from tidings.core.migrations import migrate
from tidings.core.retry import RetryPolicy
from tidings.core.status import batch_parts
from tidings.core.topology import (
    EMAIL_QUEUE,
    EMAIL_ROUTE,
    FAILED_QUEUE,
    PUSH_QUEUE,
    PUSH_ROUTE,
    REASON_HEADER,
    STATUS_QUEUE,
)
from tidings.email_worker.compose import OutgoingEmail
from tidings.email_worker.senders.smtp import SmtpSender
from tidings.push_worker.handlers import content_for

MAX_ATTEMPTS = 3


@dataclass
class Rig:
    """A bus, a delivery store, and what the flow reported (status.queue) and dead-lettered
    (failed.queue)."""

    bus: RabbitBus
    store: DeliveryStore
    events: asyncio.Queue[StatusEvent] = field(default_factory=asyncio.Queue)
    dead: asyncio.Queue[BusMessage] = field(default_factory=asyncio.Queue)
    status_messages: int = 0
    held: list[StatusEvent] = field(default_factory=list)

    async def run(
        self, deliver: Callable[[NotificationMessage], Awaitable[str]], channel: str = "email"
    ) -> DeliveryFlow:
        flow = DeliveryFlow(
            channel,  # type: ignore[arg-type]
            self.bus,
            self.store,
            RetryPolicy(MAX_ATTEMPTS, base_s=0.01, cap_s=0.01),
            deliver,
            max_wait_s=120,
        )
        await self.bus.consume(EMAIL_QUEUE if channel == "email" else PUSH_QUEUE, flow, prefetch=10)
        return flow

    async def publish(self, n: NotificationMessage) -> None:
        route = EMAIL_ROUTE if n.notification_type == "email" else PUSH_ROUTE
        await self.bus.publish(route, n.dumps(), message_id=n.notification_id)

    async def event(self, nid: str, status: str, timeout_s: float = 30) -> StatusEvent:
        """The next event of ``nid`` with ``status`` (others of ``nid`` are passed over;
        another notification's are held for its own call, whichever order they came in)."""
        for i, held in enumerate(self.held):
            if held.notification_id == nid and held.status == status:
                return self.held.pop(i)
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.events.get()
                if event.notification_id == nid and event.status == status:
                    return event
                if event.notification_id != nid:
                    self.held.append(event)

    async def dead_letter(self, nid: str, timeout_s: float = 30) -> BusMessage:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.dead.get()
                if message.message_id == nid:
                    return message


@pytest.fixture
async def rig(fresh_pg: str, fresh_vhost: str) -> AsyncIterator[Rig]:
    url = fresh_pg.replace("postgresql://", "postgresql+asyncpg://", 1)
    await asyncio.to_thread(migrate, "tidings.core.deliveries", url, "email")
    db = open_database(url, "email")
    bus = RabbitBus(fresh_vhost, delivery_limit=20)
    await bus.start()
    found = Rig(bus, DeliveryStore(db, lease_s=60))

    async def on_status(message: BusMessage) -> None:
        # One event, or a batch of the events the flow produced together.
        found.status_messages += 1
        for body in batch_parts(message.body) or [message.body]:
            found.events.put_nowait(StatusEvent.model_validate_json(body))

    async def on_failed(message: BusMessage) -> None:
        found.dead.put_nowait(message)

    await bus.consume(STATUS_QUEUE, on_status, prefetch=50)
    await bus.consume(FAILED_QUEUE, on_failed, prefetch=50)
    try:
        yield found
    finally:
        await bus.close()
        await db.close()


def message(channel: str = "email", **variables: Any) -> NotificationMessage:
    return NotificationMessage(
        notification_id=str(uuid.uuid4()),
        request_id=uuid.uuid4().hex,
        notification_type=channel,  # type: ignore[arg-type]
        template_code="t",
        language="en",
        variables={"name": "Ada", **variables},
        recipient=Recipient(user_id=str(uuid.uuid4()), name="Ada", email="ada@example.com"),
    )


async def test_an_exception_after_the_claim_ends_the_attempt_until_it_fails(rig: Rig) -> None:
    """Before: the row stayed `sending`, its copies came back `busy` through the retry tiers
    for ever, and the notification stayed pending."""
    bad, good = message(), message()
    calls: Counter[str] = Counter()

    async def deliver(n: NotificationMessage) -> str:
        calls[n.notification_id] += 1
        if n.notification_id == bad.notification_id:
            raise LookupError("no such thing")
        return "250 ok"

    await rig.run(deliver)
    await rig.publish(bad)
    failed = await rig.event(bad.notification_id, "failed")
    assert failed.error is not None and "LookupError: no such thing" in failed.error, failed
    assert failed.attempt == MAX_ATTEMPTS and calls[bad.notification_id] == MAX_ATTEMPTS
    dead = await rig.dead_letter(bad.notification_id)
    assert "LookupError: no such thing" in dead.headers[REASON_HEADER]
    row = await rig.store.get(bad.notification_id)
    assert row is not None and row.state == "failed" and row.lease_until is None
    # The worker keeps going.
    await rig.publish(good)
    await rig.event(good.notification_id, "delivered")


async def test_a_push_meta_integer_past_64_bits_fails_the_notification(rig: Rig) -> None:
    """The push worker's ``content_for`` (orjson) raises on it: the notification must end
    failed with that exception, not come back once per lease for ever."""

    async def deliver(n: NotificationMessage) -> str:
        content_for(n, {"title": "t", "body": "b"}, 60)
        return "201 created"

    big = message("push", meta={"order": 2**64})
    assert b"18446744073709551616" in big.dumps()  # it does travel (core.jsons)
    await rig.run(deliver, channel="push")
    await rig.publish(big)
    failed = await rig.event(big.notification_id, "failed")
    assert failed.error is not None and orjson.JSONEncodeError.__name__ in failed.error, failed
    assert (await rig.dead_letter(big.notification_id)).message_id == big.notification_id


async def test_a_failed_outcome_is_reported_again_by_a_redelivery(rig: Rig) -> None:
    """As a `sent` claim repeats `delivered`: the first report may be what was lost."""

    async def deliver(n: NotificationMessage) -> str:
        raise PermanentError("SMTP 554 no")

    n = message()
    await rig.run(deliver)
    await rig.publish(n)
    first = await rig.event(n.notification_id, "failed")
    await rig.dead_letter(n.notification_id)
    await rig.publish(n)  # the same message again: a redelivery after a lost report
    again = await rig.event(n.notification_id, "failed")
    assert again.error == first.error == "permanent: SMTP 554 no"
    assert (await rig.dead_letter(n.notification_id)).headers[REASON_HEADER] == first.error


async def test_a_copy_that_finds_the_notification_held_past_the_max_wait_fails(
    rig: Rig,
) -> None:
    """Before: a `busy` copy was republished for ever, whatever its age."""

    async def deliver(m: NotificationMessage) -> str:
        return "250 ok"

    flow = await rig.run(deliver)
    n = message()
    assert (await rig.store.claim(n.notification_id)).result == "claimed"  # held, lease live
    old = n.model_copy(update={"first_try_ms": now_ms() - int(flow.max_wait_s * 1000) - 1000})
    await rig.publish(old)
    failed = await rig.event(n.notification_id, "failed")
    assert failed.error is not None and "still held by another worker" in failed.error
    assert (await rig.dead_letter(n.notification_id)).message_id == n.notification_id


async def test_a_skipped_notification_s_copy_is_reported_skipped_again(rig: Rig) -> None:
    """Its delivery record is `failed` ("skipped: ..."): a copy repeats `skipped`, and is no
    dead letter."""
    n, later = message(), message()

    async def deliver(m: NotificationMessage) -> str:
        if m.notification_id == n.notification_id:
            raise NoRecipient("the user has no live push device")
        return "250 ok"

    await rig.run(deliver)
    await rig.publish(n)
    await rig.event(n.notification_id, "skipped")
    await rig.publish(n)
    again = await rig.event(n.notification_id, "skipped")
    assert again.detail == "the user has no live push device"
    await rig.publish(later)
    await rig.event(later.notification_id, "delivered")
    assert rig.dead.empty()


async def test_a_message_too_deep_to_parse_is_reported_failed_by_its_id(rig: Rig) -> None:
    async def deliver(n: NotificationMessage) -> str:
        return "250 ok"

    nested: dict[str, Any] = {}
    for _ in range(220):  # the gateway took such variables; the models' parser refuses them
        nested = {"a": nested}
    n = message()
    body = jsons.dumps(n.model_dump(mode="json") | {"variables": nested})
    await rig.run(deliver)
    await rig.bus.publish(EMAIL_ROUTE, body, message_id=n.notification_id)
    failed = await rig.event(n.notification_id, "failed")
    assert failed.error is not None and "malformed NotificationMessage" in failed.error
    dead = await rig.dead_letter(n.notification_id)
    assert "recursion limit" in dead.headers[REASON_HEADER]


async def test_a_lease_is_not_taken_by_a_worker_whose_clock_is_two_minutes_fast(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leases are compared on the database's clock: a worker two minutes ahead (its own
    utcnow) must see another's live lease as live. Before: it claimed it and sent again."""
    sends: Counter[str] = Counter()
    n = message()
    assert (await rig.store.claim(n.notification_id)).result == "claimed"  # a live lease
    import tidings.core.db as db_module
    import tidings.core.deliveries as deliveries

    def fast() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)

    monkeypatch.setattr(deliveries, "utcnow", fast)
    monkeypatch.setattr(db_module, "utcnow", fast)

    async def deliver(m: NotificationMessage) -> str:
        sends[m.notification_id] += 1
        return "250 ok"

    claim = await rig.store.claim(n.notification_id)
    assert claim.result == "busy" and 55 < claim.wait_s <= 60, claim
    flow = await rig.run(deliver)
    await flow(BusMessage(n.dumps(), EMAIL_ROUTE, n.notification_id))
    assert sends[n.notification_id] == 0


async def test_a_renewal_after_another_worker_took_the_lease_over_is_refused(
    rig: Rig,
) -> None:
    nid = str(uuid.uuid4())
    mine = await rig.store.claim(nid)
    await rig.store.renew(nid, mine.attempts)  # still mine: renewed
    # The lease runs out (as if the send waited past it) and another worker claims it.
    await expire(rig.store, nid)
    theirs = await rig.store.claim(nid)
    assert theirs.result == "claimed" and theirs.attempts == mine.attempts + 1
    with pytest.raises(LeaseLost):
        await rig.store.renew(nid, mine.attempts)
    await rig.store.renew(nid, theirs.attempts)


async def test_the_sender_renews_the_lease_right_before_the_send(rig: Rig) -> None:
    """The lease runs from the moment of the send, not from the claim before the wait for
    a connection: a send that waited past the lease does not go out once another worker
    has taken the notification over."""
    sends: Counter[str] = Counter()
    waited = asyncio.Event()
    go = asyncio.Event()

    async def deliver(n: NotificationMessage) -> str:
        waited.set()
        await go.wait()  # the wait for a pooled SMTP connection
        await renew_lease()
        sends[n.notification_id] += 1
        return "250 ok"

    flow = await rig.run(deliver)
    n = message()
    first = asyncio.create_task(flow(BusMessage(n.dumps(), EMAIL_ROUTE, n.notification_id)))
    await asyncio.wait_for(waited.wait(), 10)
    await expire(rig.store, n.notification_id)
    assert (await rig.store.claim(n.notification_id)).result == "claimed"  # another worker
    go.set()
    await asyncio.wait_for(first, 10)
    assert sends[n.notification_id] == 0  # the first did not send: the other one does


async def expire(store: DeliveryStore, nid: str) -> None:
    """Move the lease of ``nid`` into the past, on the database's clock."""
    from sqlalchemy import text

    async with store.db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE deliveries SET lease_until = now() - interval '1 second'"
                " WHERE notification_id = :n"
            ),
            {"n": nid},
        )


async def test_sqlite_leases_use_sqlite_s_clock(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/d.db"
    await asyncio.to_thread(migrate, "tidings.core.deliveries", url, "email")
    db = open_database(url, "email")
    try:
        store = DeliveryStore(db, lease_s=60)
        nid = str(uuid.uuid4())
        mine = await store.claim(nid)
        busy = await store.claim(nid)
        assert busy.result == "busy" and 55 < busy.wait_s <= 60, busy
        row = await store.get(nid)
        assert row is not None and row.lease_until is not None
        ahead = (row.lease_until - dt.datetime.now(dt.UTC)).total_seconds()
        assert 55 < ahead <= 61, ahead
        await store.renew(nid, mine.attempts)
    finally:
        await db.close()


def smtp_deliver(sender: SmtpSender) -> Callable[[NotificationMessage], Awaitable[str]]:
    """A deliver that sends a small message with the notification's id through ``sender``."""

    async def deliver(n: NotificationMessage) -> str:
        raw = (
            f"From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: <{n.notification_id}@t>"
            f"\r\nX-Tidings-Notification-ID: {n.notification_id}\r\nSubject: s\r\n\r\nhi\r\n"
        ).encode()
        email = OutgoingEmail(raw, "a@example.com", ("b@example.com",), n.notification_id)
        return await sender.send(email)

    return deliver


async def test_the_smtp_sender_renews_the_lease_after_waiting_for_a_connection(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real SMTP sender, one pooled connection: the second message waits for it while
    its lease runs out and another worker takes the notification; when the connection comes
    free the renewal is refused, and the second message never reaches the server."""
    import tidings.core.deliveries as deliveries_module

    moved = [0.0]  # the lease's age as the flow reads it: moved on with the database's
    monkeypatch.setattr(deliveries_module, "_clock", lambda: time.monotonic() + moved[0])
    smtp = await SmtpPeer().start()
    smtp.gate = asyncio.Event()  # the server takes each message but holds its reply
    sender = SmtpSender(smtp.url, pool_size=1, timeout_s=10)

    deliver = smtp_deliver(sender)

    try:
        flow = await rig.run(deliver)
        first, second = message(), message()
        sending = [
            asyncio.create_task(flow(BusMessage(m.dumps(), EMAIL_ROUTE, m.notification_id)))
            for m in (first, second)
        ]
        # Whichever claimed first holds the connection; the other waits for it.
        arrived = await asyncio.wait_for(smtp.arrivals.get(), 10)
        holder = str(arrived.message["X-Tidings-Notification-ID"])
        waiting = second if holder == first.notification_id else first
        await expire(rig.store, waiting.notification_id)
        moved[0] = 61.0  # the wait for the connection outlasted the 60 s lease
        assert (await rig.store.claim(waiting.notification_id)).result == "claimed"
        smtp.gate.set()
        await asyncio.wait_for(asyncio.gather(*sending), 20)
        by_id = smtp.count_by("X-Tidings-Notification-ID")
        assert by_id == {holder: 1}, by_id
        row = await rig.store.get(holder)
        assert row is not None and row.state == "sent"
    finally:
        await sender.close()
        await smtp.stop()


async def test_a_partial_delivery_is_retried_then_delivered_when_the_flow_gives_up(
    rig: Rig,
) -> None:
    """``Unfinished``: the rest (some devices) is retried as its error says, and when the flow
    gives up on it, the notification is delivered with what was accepted, never failed. The
    push worker used to re-derive when that would be (with a slack constant for timing)."""
    calls: Counter[str] = Counter()

    async def deliver(m: NotificationMessage) -> str:
        calls[m.notification_id] += 1
        raise Unfinished(TransientError("device 2: 503"), "1 device(s) accepted: device 1")

    n = message("push")
    await rig.run(deliver, channel="push")
    await rig.publish(n)
    done = await rig.event(n.notification_id, "delivered")
    assert done.detail == "accepted: 1 device(s) accepted: device 1", done
    assert done.attempt == MAX_ATTEMPTS and calls[n.notification_id] == MAX_ATTEMPTS
    row = await rig.store.get(n.notification_id)
    assert row is not None and row.state == "sent"
    assert rig.dead.empty()


async def test_a_partial_delivery_waiting_past_the_max_wait_is_delivered(rig: Rig) -> None:
    """The same at the end of a wait (an open breaker for the rest): delivered in part, where
    a wait with nothing accepted fails."""
    partly, nothing = message("push"), message("push")

    async def deliver(m: NotificationMessage) -> str:
        waiting = DependencyUnavailable("webpush breaker open")
        if m.notification_id == partly.notification_id:
            raise Unfinished(waiting, "1 device(s) accepted: device 1")
        raise waiting

    flow = await rig.run(deliver, channel="push")
    long_ago = now_ms() - int(flow.max_wait_s * 1000) - 1000
    for n in (partly, nothing):
        await rig.publish(n.model_copy(update={"first_try_ms": long_ago}))
    done = await rig.event(partly.notification_id, "delivered")
    assert done.detail == "accepted: 1 device(s) accepted: device 1", done
    failed = await rig.event(nothing.notification_id, "failed")
    assert failed.error is not None and "still unavailable" in failed.error
    assert (await rig.dead_letter(nothing.notification_id)).message_id == nothing.notification_id
    assert rig.dead.empty()


async def test_events_of_concurrent_messages_go_to_the_gateway_in_one_message(rig: Rig) -> None:
    """Ten sends that finish together: their ten reports travel in fewer messages than ten
    (the first may go alone: no timer), every one of them there."""
    arrived = 0
    together = asyncio.Event()

    async def deliver(n: NotificationMessage) -> str:
        nonlocal arrived
        arrived += 1
        if arrived == 10:
            together.set()
        await together.wait()
        return "250 ok"

    await rig.run(deliver)
    sent = [message() for _ in range(10)]
    for n in sent:
        await rig.publish(n)
    seen = set()
    async with asyncio.timeout(30):
        while len(seen) < 10:
            event = await rig.events.get()
            assert event.status == "delivered"
            seen.add(event.notification_id)
    assert seen == {n.notification_id for n in sent}
    assert rig.status_messages < 10


async def test_a_notification_costs_a_claim_and_an_outcome_and_no_renewal(rig: Rig) -> None:
    """The database statements of notifications sent through the flow by the real SMTP
    sender: per group one claim (INSERT … ON CONFLICT) and one outcome (UPDATE), both on their
    own (autocommit, no BEGIN/COMMIT), and no lease renewal while the claim's lease covers
    the SMTP dialogue's deadline (10 s of a 60 s lease). Before: a renewal per group too, and
    the outcome inside a transaction."""
    from sqlalchemy import event

    smtp = await SmtpPeer().start()
    sender = SmtpSender(smtp.url, pool_size=4, timeout_s=10)
    seen: list[tuple[str, bool]] = []

    def before(conn: Any, _cursor: object, statement: str, *_: object) -> None:
        autocommit = bool(getattr(conn.connection.dbapi_connection, "autocommit", False))
        seen.append((statement.split()[0].upper(), autocommit))

    deliver = smtp_deliver(sender)

    store = rig.store
    sync_engine = store.db.engine.sync_engine
    try:
        flow = await rig.run(deliver)
        batches = (store._claims.batches, store._renewals.batches, store._finishes.batches)
        event.listen(sync_engine, "before_cursor_execute", before)
        sent = [message() for _ in range(20)]
        await asyncio.wait_for(
            asyncio.gather(
                *(flow(BusMessage(m.dumps(), EMAIL_ROUTE, m.notification_id)) for m in sent)
            ),
            30,
        )
        event.remove(sync_engine, "before_cursor_execute", before)
        claims, renewals, outcomes = (
            store._claims.batches - batches[0],
            store._renewals.batches - batches[1],
            store._finishes.batches - batches[2],
        )
        assert renewals == 0
        assert sorted(seen) == sorted([("INSERT", True)] * claims + [("UPDATE", True)] * outcomes)
        assert len(seen) <= 2 * len(sent)  # at most a claim and an outcome per notification
        assert smtp.count_by("X-Tidings-Notification-ID") == {m.notification_id: 1 for m in sent}
        for m in sent:
            row = await store.get(m.notification_id)
            assert row is not None and row.state == "sent"
    finally:
        with contextlib.suppress(Exception):
            event.remove(sync_engine, "before_cursor_execute", before)
        await sender.close()
        await smtp.stop()


async def test_a_lease_that_might_end_before_the_deadline_is_renewed(rig: Rig) -> None:
    """A sender whose hand-over may take longer than what is left of the claim's lease (less
    a tenth of it) renews it first; one with a short deadline does not."""
    renewed = rig.store._renewals.batches

    async def deliver(n: NotificationMessage) -> str:
        await renew_lease(within_s=5)  # 5 s of a 60 s lease: covered, nothing written
        assert rig.store._renewals.batches == renewed
        await renew_lease(within_s=55)  # past 60 - 6: renewed
        assert rig.store._renewals.batches == renewed + 1
        await renew_lease()  # no deadline given: always renewed
        assert rig.store._renewals.batches == renewed + 2
        return "250 ok"

    flow = await rig.run(deliver)
    n = message()
    await asyncio.wait_for(flow(BusMessage(n.dumps(), EMAIL_ROUTE, n.notification_id)), 10)
    row = await rig.store.get(n.notification_id)
    assert row is not None and row.state == "sent"
