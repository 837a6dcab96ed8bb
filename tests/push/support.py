"""Steps the push tests share."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.helpers import wait_for_condition
from tests.scenario import create_user, notification

# The gateway still skips a push notification for a user without a push_token: users whose
# devices are registered through the devices API carry this placeholder (stored, but not
# shaped like an FCM token, so it registers no device).
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


async def send_push(gw: httpx.AsyncClient, user_id: str, code: str, **overrides: Any) -> str:
    body = notification(user_id, code, notification_type="push", **overrides)
    body["variables"] = {
        "name": "Grace",
        "link": "https://shop.example.com/orders/42",
        "meta": None,
        "order_id": "42",
        **overrides.get("variables", {}),
    }
    answer = await gw.post("/api/v1/notifications/", json=body)
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
