"""Steps the push tests share."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.credentials import SETTINGS
from tests.helpers import wait_for_condition
from tests.push.keys import BrowserKeys
from tests.push.webpush_peer import Script, WebPushReceiver
from tests.scenario import create_user, notification
from tidings.cli.vapid import generate_vapid_keys
from tidings.push_worker.app import webpush_sender
from tidings.push_worker.senders import Device, PushContent
from tidings.push_worker.senders.netguard import Resolver, system_resolver
from tidings.push_worker.senders.webpush import WebPushSender
from tidings.push_worker.settings import PushSettings

CONTENT = PushContent(notification_id="n-1", title="Hello", body="Hi", image=None, link=None)

# A push_token that is not shaped like an FCM token registers no device (it is kept on the
# user as it is): users whose devices come from the devices API carry this one, so that the
# devices a test adds are all the user has.
DEVICES_PLACEHOLDER = "devices-api"


async def push_template(gw: httpx.AsyncClient, **fields: Any) -> str:
    code = f"push-{uuid.uuid4().hex[:8]}"
    body = {
        "code": code,
        "channel": "push",
        "language": "en",
        "title": "Hello {{ name }}",
        "body": "Your order {{ order_id }} has shipped.",
        "image_url": "https://cdn.example.com/{{ order_id }}.png",
        "link": "{{ link }}",
        **fields,
    }
    answer = await gw.post("/api/v1/templates/", json=body)
    assert answer.status_code == 201, answer.text
    return code


async def push_user(gw: httpx.AsyncClient, push_token: str = DEVICES_PLACEHOLDER) -> str:
    user = await create_user(gw, push_token=push_token, preferences={"email": True, "push": True})
    return str(user["user_id"])


async def add_webpush(gw: httpx.AsyncClient, user_id: str, subscription: dict[str, Any]) -> str:
    answer = await gw.post(
        f"/api/v1/users/{user_id}/devices/",
        json={"kind": "webpush", "subscription": subscription},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["data"]["device_id"])


async def gone_and_alive(
    gw: httpx.AsyncClient, receiver: WebPushReceiver
) -> tuple[str, str, dict[str, Any], dict[str, Any], str]:
    """A push template and a user with two Web Push devices, the first one's push service
    answering 410 for good: (template code, user id, gone, alive, the gone one's device id)."""
    code = await push_template(gw)
    user_id = await push_user(gw)
    gone, alive = receiver.subscribe(), receiver.subscribe()
    gone_id = await add_webpush(gw, user_id, gone)
    await add_webpush(gw, user_id, alive)
    receiver.scripts[receiver.sid_of(gone)] = Script(forever=(410, {}))
    return code, user_id, gone, alive, gone_id


async def send_push(
    gw: httpx.AsyncClient,
    user_id: str,
    code: str,
    headers: dict[str, str] | None = None,
    **overrides: Any,
) -> str:
    """``headers``: another key's (a client application's) instead of the admin's."""
    body = notification(user_id, code, notification_type="push", **overrides)
    body["variables"] = {
        "name": "Grace",
        "link": "https://shop.example.com/orders/42",
        "meta": None,
        "order_id": "42",
        **overrides.get("variables", {}),
    }
    answer = await gw.post("/api/v1/notifications/", json=body, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["data"]["notification_id"])


async def final_status(gw: httpx.AsyncClient, notification_id: str, timeout_s: float = 30) -> dict:
    """The notification once it is delivered, failed or skipped."""

    async def done() -> dict[str, Any] | None:
        data = (await gw.get(f"/api/v1/notifications/{notification_id}/")).json()["data"]
        return data if data and data["status"] in ("delivered", "failed", "skipped") else None

    found: dict[str, Any] = await wait_for_condition(
        done, timeout_s=timeout_s, what=f"notification {notification_id} final"
    )
    return found


async def devices_of(gw: httpx.AsyncClient, user_id: str) -> dict[str, dict[str, Any]]:
    answer = await gw.get(f"/api/v1/users/{user_id}/devices/")
    assert answer.status_code == 200, answer.text
    return {d["device_id"]: d for d in answer.json()["data"]}


def standalone_sender(
    *,
    allow_insecure: bool = True,
    resolve: Resolver = system_resolver,
    failures: int = 2,
    vapid_private_key: str | None = None,
    **more: Any,
) -> WebPushSender:
    """The push worker's Web Push sender as app.py builds it, outside any service; ``more``:
    other PushSettings."""
    settings = PushSettings(
        **SETTINGS,
        vapid_private_key=vapid_private_key or generate_vapid_keys()[0],
        webpush_allow_insecure=allow_insecure,
        push_breaker_failures=failures,
        push_breaker_reset_s=60.0,
        push_timeout_s=5.0,
        **more,
    )
    return webpush_sender(settings, resolve)


def webpush_device(endpoint: str, keys: BrowserKeys | None = None) -> Device:
    keys = keys or BrowserKeys.new()
    return Device(
        device_id=uuid.uuid4().hex,
        kind="webpush",
        endpoint=endpoint,
        p256dh=keys.p256dh,
        auth=keys.auth,
    )


def subscribed_device(subscription: dict[str, Any]) -> Device:
    """A device for a ``WebPushReceiver.subscribe()`` subscription."""
    return Device(
        device_id=uuid.uuid4().hex,
        kind="webpush",
        endpoint=subscription["endpoint"],
        p256dh=subscription["keys"]["p256dh"],
        auth=subscription["keys"]["auth"],
    )
