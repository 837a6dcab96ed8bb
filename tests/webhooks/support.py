"""Steps the webhooks tests share."""

from __future__ import annotations

from typing import Any

import httpx

from tests.scenario import create_template, create_user, notification
from tests.webhooks.receiver import Receiver

ENDPOINTS = "/api/v1/webhooks/endpoints/"


async def register(
    client: httpx.AsyncClient,
    receiver: Receiver,
    events: list[str],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    made = await client.post(
        ENDPOINTS,
        json={"url": receiver.url, "events": events, "description": "test"},
        headers=headers,
    )
    assert made.status_code == 201, made.text
    data: dict[str, Any] = made.json()["data"]
    receiver.secrets.append(data["secret"])
    return data


async def client_key(gw: httpx.AsyncClient, name: str) -> dict[str, str]:
    made = await gw.post(
        "/api/v1/admin/api-keys/",
        json={"name": name, "scopes": ["notifications:send", "notifications:read"]},
    )
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['data']['key']}"}


async def send(gw: httpx.AsyncClient, n: int, headers: dict[str, str] | None = None) -> list[str]:
    user = await create_user(gw)
    template = await create_template(gw)
    ids = []
    for _ in range(n):
        sent = await gw.post(
            "/api/v1/notifications/",
            json=notification(user["user_id"], template["code"]),
            headers=headers,
        )
        assert sent.status_code == 202, sent.text
        ids.append(sent.json()["data"]["notification_id"])
    return ids


async def delete_all(gw: httpx.AsyncClient) -> None:
    """Endpoints of earlier tests out of the way (the admin sees every one)."""
    for e in (await gw.get(ENDPOINTS)).json()["data"]:
        await gw.delete(f"{ENDPOINTS}{e['endpoint_id']}/")
