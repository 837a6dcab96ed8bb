"""A notification's story shows its webhook deliveries: through the real stack (gateway,
workers, the webhooks worker, a verifying receiver), each message to the subscribed endpoint
with its event type, its state and each attempt (status code, duration, the answer's
excerpt), found by the notification (webhook_messages.notification_id)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import httpx

from tests.credentials import ADMIN_KEY
from tests.helpers import wait_for_condition
from tests.scenario import wait_for_status
from tests.system import System
from tests.webhooks.conftest import WorkerHandle
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import delete_all, register, send
from tidings.webhooks.events import notification_of


async def test_the_story_shows_the_webhook_deliveries(
    system: System, worker: WorkerHandle, receiver: Receiver
) -> None:
    await delete_all(system.gateway)
    endpoint = await register(system.gateway, receiver, ["*"])
    [nid] = await send(system.gateway, 1)
    await wait_for_status(system.gateway, nid, "delivered")
    await receiver.wait_for(
        lambda: [b["type"] for b in receiver.events_of(nid)][-1:] == ["notification.delivered"],
        30,
        "the delivered event",
    )
    received = {
        w: b for w, b in receiver.accepted.items() if b["data"].get("notification_id") == nid
    }
    async with httpx.AsyncClient(base_url=str(system.gateway.base_url), timeout=10) as client:
        assert (await client.post("/dashboard/login", data={"admin_key": ADMIN_KEY})).is_redirect

        # The outcomes are written by group commit after the answers: wait for the page.
        async def delivered_shown() -> str | None:
            page = (await client.get(f"/dashboard/notifications/{nid}")).text
            return page if page.count('class="wh-delivered"') >= len(received) else None

        page = await wait_for_condition(delivered_shown, timeout_s=30, what="the outcomes shown")
        assert 'id="webhook-deliveries"' in page
        for webhook_id, body in received.items():
            assert f'id="wh-{webhook_id}" class="wh-delivered"' in page, webhook_id
            assert f"<code>{body['type']}</code>" in page
        assert receiver.url in page and f"/dashboard/webhooks/{endpoint['endpoint_id']}#m-" in page
        assert "HTTP 200" in page and "answered 200" in page, "status code and answer excerpt"
        data = (await client.get(f"/dashboard/api/notifications/{nid}")).json()["data"]
        assert {m["webhook_id"] for m in data["webhooks"]} >= set(received)


def test_each_event_names_its_notification_for_the_story() -> None:
    """The id a message is found by: the outbox row's own, or device.removed's (the
    notification whose attempt found the dead token); none for the others."""
    nid = uuid.uuid4()

    def row(**kw: object) -> SimpleNamespace:
        return SimpleNamespace(**({"notification_id": None, "extra": None} | kw))

    assert notification_of(row(notification_id=nid)) == nid
    assert notification_of(row(extra={"notification_id": str(nid), "device_id": "d"})) == nid
    assert notification_of(row(extra={"user_id": "u"})) is None
    assert notification_of(row(extra={"notification_id": "not a uuid"})) is None
