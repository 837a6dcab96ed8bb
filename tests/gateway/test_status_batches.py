"""The gateway's status consumer on batches of status events (core.status.StatusReporter):
recorded together and acknowledged once, a bad event dead-lettered alone with its reason, a
duplicate harmless, an outage waited out by the events it stopped only, and single events
(a worker from before batches) still recorded."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx

from tests.helpers import wait_for_condition
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System
from tidings.core import jsons
from tidings.core.bus.rabbit import RabbitBus
from tidings.core.messages import StatusEvent
from tidings.core.status import BATCH_KEY
from tidings.core.topology import STATUS_ROUTE


async def scheduled(gw: httpx.AsyncClient, count: int) -> list[str]:
    """Notifications that wait a day in the outbox: only the events below move them."""
    user = await create_user(gw)
    template = await create_template(gw)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    ids = []
    for _ in range(count):
        answer = await gw.post(
            "/api/v1/notifications/",
            json=notification(user["user_id"], template["code"], send_at=later),
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["data"]["notification_id"])
    return ids


async def publish(amqp_url: str, body: bytes, message_id: str) -> None:
    bus = RabbitBus(amqp_url)
    await bus.start()
    try:
        await bus.publish(STATUS_ROUTE, body, message_id=message_id)
    finally:
        await bus.close()


def event(nid: str, status: str, **fields: Any) -> dict[str, Any]:
    return StatusEvent(notification_id=nid, status=status, channel="email", **fields).model_dump(
        mode="json"
    )


async def history(gw: httpx.AsyncClient, nid: str) -> dict[str, Any]:
    data: dict[str, Any] = (await gw.get(f"/api/v1/notifications/{nid}/")).json()["data"]
    return data


async def dead_letter(gw: httpx.AsyncClient, nid: str) -> dict[str, Any]:
    async def stored() -> list[dict[str, Any]]:
        answer = await gw.get("/api/v1/admin/dead-letters/", params={"notification_id": nid})
        rows: list[dict[str, Any]] = answer.json()["data"]
        return rows

    rows = await wait_for_condition(stored, timeout_s=30, what=f"a dead letter for {nid}")
    assert len(rows) == 1, rows
    return rows[0]


async def test_a_batch_records_its_good_events_and_dead_letters_each_bad_one_alone(
    system: System, amqp_vhost: str
) -> None:
    gw = system.gateway
    a, b, c = await scheduled(gw, 3)
    unknown = str(uuid.uuid4())
    batch = [
        event(a, "delivered", detail="250 batch a"),
        event(b, "failed", error="550 batch b"),
        {**event(c, "delivered"), "status": "lost in the post"},  # does not fit
        event(unknown, "delivered"),  # nothing to attach it to
        event(a, "delivered", detail="250 batch a"),  # the same report twice
    ]
    await publish(amqp_vhost, jsons.dumps({BATCH_KEY: batch}), f"{a}:batch")
    done_a = await wait_for_status(gw, a, "delivered")
    done_b = await wait_for_status(gw, b, "failed")
    assert done_b["error"] == "550 batch b"
    bad = await dead_letter(gw, c)
    assert "malformed StatusEvent: status" in bad["reason"], bad
    gone = await dead_letter(gw, unknown)
    assert "status event refused" in gone["reason"] and "not found" in gone["reason"], gone
    # The duplicate changed nothing: delivered, and no dead letter of its own.
    assert [h["status"] for h in done_a["history"]][-1] == "delivered"
    answer = await gw.get("/api/v1/admin/dead-letters/", params={"notification_id": a})
    assert answer.json()["data"] == []
    assert (await history(gw, c))["status"] == "scheduled"


async def test_an_outage_mid_batch_sends_round_only_the_events_it_stopped(
    system: System, amqp_vhost: str
) -> None:
    """The users service down: the unsubscribe report (which needs it) waits; the other
    event of the batch is recorded at once, and once only."""
    gw = system.gateway
    a, b = await scheduled(gw, 2)
    await system.stop_service("users")
    try:
        batch = [
            event(a, "delivered", detail="250 before the outage ended"),
            event(b, "delivered", detail="unsubscribed", feedback="unsubscribe"),
        ]
        await publish(amqp_vhost, jsons.dumps({BATCH_KEY: batch}), f"{a}:outage")
        await wait_for_status(gw, a, "delivered")
        assert (await history(gw, b))["status"] == "scheduled"  # waiting, not refused
    finally:
        await system.start_service("users")
    await wait_for_status(gw, b, "delivered", timeout_s=60)
    rows = (await history(gw, a))["history"]
    assert [h["detail"] for h in rows].count("250 before the outage ended") == 1
    for nid in (a, b):
        answer = await gw.get("/api/v1/admin/dead-letters/", params={"notification_id": nid})
        assert answer.json()["data"] == []


async def test_a_single_event_from_a_worker_before_batches_is_still_recorded(
    system: System, amqp_vhost: str
) -> None:
    gw = system.gateway
    (a,) = await scheduled(gw, 1)
    single = StatusEvent(notification_id=a, status="delivered", channel="email", detail="250")
    await publish(amqp_vhost, single.dumps(), f"{a}:single")
    await wait_for_status(gw, a, "delivered")
