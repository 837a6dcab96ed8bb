"""The steps a client takes, shared by the in-process and the end-to-end tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.helpers import assert_envelope, wait_for_condition

WELCOME = {
    "channel": "email",
    "language": "en",
    "subject": "Welcome, {{ name }}!",
    "body": '<h1>Hello {{ name }}</h1><p>Start here: <a href="{{ link }}">{{ link }}</a></p>',
    "text_body": "Hello {{ name }}, start here: {{ link }}",
}


async def create_user(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Grace Hopper",
        "email": f"grace-{uuid.uuid4().hex[:10]}@example.com",
        "push_token": None,
        "preferences": {"email": True, "push": True},
        "password": "a long enough password",
        **overrides,
    }
    answer = await client.post("/api/v1/users/", json=body)
    assert answer.status_code == 201, answer.text
    assert_envelope(answer.json(), success=True)
    return dict(answer.json()["data"])


async def create_template(
    client: httpx.AsyncClient, code: str | None = None, **fields: Any
) -> dict[str, Any]:
    body = {"code": code or f"welcome-{uuid.uuid4().hex[:8]}", **WELCOME, **fields}
    answer = await client.post("/api/v1/templates/", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json()["data"])


def notification(user_id: str, template_code: str, **overrides: Any) -> dict[str, Any]:
    return {
        "notification_type": "email",
        "user_id": user_id,
        "template_code": template_code,
        "variables": {"name": "Grace", "link": "https://example.com/start?x=1", "meta": None},
        "request_id": f"req-{uuid.uuid4().hex}",
        "priority": 5,
        "metadata": {"campaign": "test"},
        **overrides,
    }


async def send_one(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """A user, a template and one email notification to them (``fields``: the request's
    others, such as ``send_at``); the accepted answer, with the user's id and address and
    the template."""
    user = await create_user(client)
    template = await create_template(client)
    answer = await client.post(
        "/api/v1/notifications/", json=notification(user["user_id"], template["code"], **fields)
    )
    assert answer.status_code in (200, 201, 202), answer.text
    mine = {"user_id": user["user_id"], "email": user["email"], "template": template}
    return {**answer.json()["data"], **mine}


async def wait_for_status(
    client: httpx.AsyncClient, notification_id: str, status: str, timeout_s: float = 30
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        answer = await client.get(f"/api/v1/notifications/{notification_id}/")
        data = answer.json()["data"]
        return data if data and data["status"] == status else None

    found: dict[str, Any] = await wait_for_condition(
        reached, timeout_s=timeout_s, what=f"notification {notification_id} {status}"
    )
    return found
