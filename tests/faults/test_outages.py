"""A consumer's own database down for a few seconds while notifications are in flight: the
email worker's (its delivery records) and the gateway's (the status and failed.queue
consumers). An outage is a wait: nothing fails, nothing is lost, sent twice or left pending,
nothing is dead-lettered, and no message goes back to its queue (no delivery is spent).

Also: a dead-lettered status event keeps its notification id and replays, and the reconciler
settles notifications left pending (a lost report, a lost message).

Each database is cut at a TCP proxy between the one service and PostgreSQL; every other
service, and every other test, keeps the machine's server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aio_pika
import asyncpg
import httpx

from tests.faults.conftest import Proxies, Start
from tests.faults.harness import (
    Run,
    history,
    send_many,
    statuses,
    tally,
    wait_quiet,
    wait_until_all,
    waited_twice,
    waiting_out,
)
from tests.helpers import wait_for_condition
from tests.scenario import create_template, create_user, notification, send_one, wait_for_status
from tests.smtp_peer import SmtpPeer
from tidings.core import jsons
from tidings.core.messages import StatusEvent
from tidings.core.metrics import CONSUMED
from tidings.core.topology import (
    EMAIL_QUEUE,
    EMAIL_ROUTE,
    EXCHANGE,
    FAILED_QUEUE,
    FAILED_ROUTE,
    REASON_HEADER,
    STATUS_QUEUE,
    STATUS_ROUTE,
)

N = 50
PG_PORT = 5432
# Four SMTP dialogues at once (TIDINGS_SMTP_POOL_SIZE): that many are inside one at the cut.
POOL = 4


def requeued(*queues: str) -> float:
    """Messages returned to their queue so far (the nack path that spends deliveries)."""
    return sum(CONSUMED.labels(q, "requeued")._value.get() for q in queues)


async def dead_letters(gw: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    answer = await gw.get("/api/v1/admin/dead-letters/", params={"limit": 100, **params})
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["data"]
    return rows


def hold_replies(smtp: SmtpPeer) -> asyncio.Event:
    """From now on the SMTP server takes each message but holds its reply until the gate
    opens: the sends are in flight."""
    smtp.gate = asyncio.Event()
    smtp.hold_after = len(smtp.received)
    return smtp.gate


async def outbox_empty(database_url: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return not await conn.fetchval("SELECT count(*) FROM gateway.outbox")
    finally:
        await conn.close()


async def test_the_email_worker_s_database_down_fails_nothing(
    make_system: Start, proxy_to: Proxies, fresh_pg: str, fresh_vhost: str
) -> None:
    """Before: the issue measured 50 of 50 failed ("dead-lettered by the broker:
    delivery_limit"); this test run against main's code instead found sends whose mark the
    cut lost sent again (duplicates). Either fails it."""
    proxy = await proxy_to(PG_PORT)
    # A short lease: a claim whose answer the cut swallowed holds its row this long.
    system = await make_system(email_database_url=proxy.url(fresh_pg), delivery_lease_s=10)
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    gate = hold_replies(system.smtp)
    before = requeued(EMAIL_QUEUE)
    run = Run.new("email-db")
    await send_many(gw, run, user["user_id"], template["code"], N)

    async def in_flight() -> bool:
        return system.smtp.held >= POOL

    await wait_for_condition(in_flight, timeout_s=30, what="sends in flight")
    await proxy.cut()
    cut_at = time.monotonic()
    # The server's replies come back while the worker cannot record them; the other
    # sends wait for a connection, then for their lease to be renewed.
    gate.set()

    async def worker_waited_twice() -> bool:
        # The worker met its store's outage, parked its copies in the retry tiers (no
        # attempt, no delivery spent), and met it again when they came back.
        return await waited_twice(fresh_pg, run)

    await wait_for_condition(worker_waited_twice, timeout_s=60, what="the worker waiting twice")
    during = await statuses(fresh_pg, run)
    assert during["failed"] == 0, during
    await proxy.restore()
    outage_s = time.monotonic() - cut_at
    await wait_until_all(fresh_pg, run, "delivered", timeout_s=120)
    await wait_quiet(fresh_vhost)

    result = tally(system.smtp, run)
    print(f"email worker's database down {outage_s:.1f}s, {N} in flight: {result}")
    assert result.delivered == N and not result.lost, result
    assert not result.duplicated and not result.unexpected, result
    assert await statuses(fresh_pg, run) == {"delivered": N}
    assert await dead_letters(gw) == []
    assert requeued(EMAIL_QUEUE) == before  # waited in the retry tiers, spent no delivery


async def test_the_gateway_s_database_down_loses_no_status(
    make_system: Start, proxy_to: Proxies, fresh_pg: str, fresh_vhost: str
) -> None:
    """Measured before: status events dead-lettered by the delivery limit, stored with a null
    notification id, their notifications pending for good; failed.queue's consumer spun."""
    proxy = await proxy_to(PG_PORT)
    system = await make_system(gateway_database_url=proxy.url(fresh_pg))
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    gate = hold_replies(system.smtp)
    before = requeued(STATUS_QUEUE, FAILED_QUEUE)
    run = Run.new("gateway-db")
    await send_many(gw, run, user["user_id"], template["code"], N)

    async def published() -> bool:
        return system.smtp.held >= POOL and await outbox_empty(fresh_pg)

    await wait_for_condition(published, timeout_s=30, what="all published, sends in flight")
    await proxy.cut()
    cut_at = time.monotonic()
    gate.set()
    # A dead letter while the database is down: failed.queue's consumer must wait too.
    await publish(fresh_vhost, EMAIL_ROUTE, b"{not json", "poison")

    async def all_sent() -> bool:
        return len(tally(system.smtp, run).lost) == 0

    await wait_for_condition(all_sent, timeout_s=60, what="every email at the server")

    async def consumers_waiting() -> bool:
        # The status consumer and failed.queue's consumer both met the outage, parked their
        # messages in the retry tiers instead of requeueing them, and met it again.
        routes = (STATUS_ROUTE, FAILED_ROUTE)
        return all([await waiting_out(fresh_vhost, r, tier_ms_at_least=2000) for r in routes])

    await wait_for_condition(consumers_waiting, timeout_s=60, what="both consumers waiting")
    await proxy.restore()
    outage_s = time.monotonic() - cut_at
    await wait_until_all(fresh_pg, run, "delivered", timeout_s=120)
    await wait_quiet(fresh_vhost)
    result = tally(system.smtp, run)
    print(f"gateway's database down {outage_s:.1f}s, {N} reports in flight: {result}")
    assert result.delivered == N and not result.duplicated, result
    assert await statuses(fresh_pg, run) == {"delivered": N}
    rows = await dead_letters(gw)
    assert [r["payload"] for r in rows] == ["{not json"], rows  # only the poison
    assert requeued(STATUS_QUEUE, FAILED_QUEUE) == before


async def publish(amqp_url: str, route: str, body: bytes, message_id: str, **headers: Any) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE)
        await exchange.publish(
            aio_pika.Message(body, message_id=message_id, headers=headers), route
        )
    finally:
        await connection.close()


async def test_a_dead_lettered_status_event_keeps_its_id_and_replays(
    make_system: Start, fresh_vhost: str
) -> None:
    """As a status event the broker dead-lettered (delivery limit) would arrive."""
    system = await make_system()
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    await system.stop_service("email")  # nobody delivers: the notification stays pending
    accepted = await gw.post(
        "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
    )
    nid = accepted.json()["data"]["notification_id"]
    event = StatusEvent(notification_id=nid, status="delivered", channel="email", detail="250 ok")
    reason = f"dead-lettered by the broker: delivery_limit (from {STATUS_QUEUE})"
    await publish(fresh_vhost, FAILED_ROUTE, event.dumps(), nid, **{REASON_HEADER: reason})

    async def stored() -> list[dict[str, Any]]:
        return await dead_letters(gw, notification_id=nid)

    rows = await wait_for_condition(stored, timeout_s=30, what="the status event's dead letter")
    assert rows[0]["notification_id"] == nid and rows[0]["reason"] == reason
    assert (await history(gw, nid))["status"] == "pending"  # a status event fails nothing
    answer = await gw.post(
        "/api/v1/admin/dead-letters/replay/", json={"dead_letter_ids": [rows[0]["dead_letter_id"]]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"][0]["outcome"] == "replayed", answer.text
    await wait_for_status(gw, nid, "delivered")


async def test_the_reconciler_settles_what_was_left_pending(
    make_system: Start, fresh_pg: str, fresh_vhost: str
) -> None:
    """A report lost after the send (the worker's record says sent: reported again, not
    sent again) and a message lost before it (sent now); each requeue is in the history."""
    system = await make_system(reconcile_every_s=0.5, reconcile_after_s=3)
    gw = system.gateway
    sent = await send_one(gw)
    sent_id = sent["notification_id"]
    await wait_for_status(gw, sent_id, "delivered")
    await system.stop_service("email")
    lost = await gw.post(
        "/api/v1/notifications/", json=notification(sent["user_id"], sent["template"]["code"])
    )
    lost_id = lost.json()["data"]["notification_id"]

    async def queued() -> bool:
        return await outbox_empty(fresh_pg)

    await wait_for_condition(queued, timeout_s=30, what="the second one published")
    await purge(fresh_vhost, EMAIL_QUEUE)  # its message is lost
    conn = await asyncpg.connect(fresh_pg)
    try:  # the first one's delivered report is lost: back to pending
        await conn.execute(
            "UPDATE gateway.notifications SET status = 'pending' WHERE id = $1", sent_id
        )
    finally:
        await conn.close()
    await system.start_service("email")
    for nid in (sent_id, lost_id):
        found = await wait_for_status(gw, nid, "delivered", timeout_s=60)
        assert any("reconciler:" in (e["detail"] or "") for e in found["history"]), found
    await wait_quiet(fresh_vhost)
    by_id = system.smtp.count_by("X-Tidings-Notification-ID")
    assert by_id[sent_id] == 1 and by_id[lost_id] == 1, by_id  # never sent twice


async def purge(amqp_url: str, queue: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await (await channel.get_queue(queue)).purge()
    finally:
        await connection.close()


async def test_a_message_too_deep_for_the_worker_fails_by_its_id_and_replays(
    make_system: Start, fresh_pg: str, fresh_vhost: str
) -> None:
    """The worker cannot read it, but can read whose it is: the notification fails with the
    parser's reason, the dead letter keeps its id, and a replay (built again from the stored
    notification) delivers it. Before: dead-lettered as malformed with no id, left pending."""
    system = await make_system()
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    await system.stop_service("email")
    accepted = await gw.post(
        "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
    )
    nid = accepted.json()["data"]["notification_id"]

    async def published() -> bool:
        return await outbox_empty(fresh_pg)

    await wait_for_condition(published, timeout_s=30, what="published")
    await purge(fresh_vhost, EMAIL_QUEUE)  # instead, a copy nested too deep:
    nested: dict[str, Any] = {}
    for _ in range(220):
        nested = {"a": nested}
    body = {
        "notification_id": nid,
        "request_id": "r",
        "notification_type": "email",
        "template_code": template["code"],
        "language": "en",
        "variables": {"name": "Grace", "link": "https://example.com/", "deep": nested},
        "recipient": {"user_id": user["user_id"], "name": "Grace"},
    }
    await publish(fresh_vhost, EMAIL_ROUTE, jsons.dumps(body), nid)
    await system.start_service("email")
    failed = await wait_for_status(gw, nid, "failed")
    assert "malformed NotificationMessage" in (failed["error"] or ""), failed

    async def stored() -> list[dict[str, Any]]:
        return await dead_letters(gw, notification_id=nid)

    rows = await wait_for_condition(stored, timeout_s=30, what="its dead letter, by id")
    answer = await gw.post(
        "/api/v1/admin/dead-letters/replay/", json={"dead_letter_ids": [rows[0]["dead_letter_id"]]}
    )
    assert answer.json()["data"][0]["outcome"] == "replayed", answer.text
    await wait_for_status(gw, nid, "delivered")
    assert system.smtp.count_by("X-Tidings-Notification-ID")[nid] == 1
