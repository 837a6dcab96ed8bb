"""Devices are servers the push worker will call, chosen by users: a cap on devices per user
(dead ones make room first) and a rate limit on registering them, per user."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.credentials import SETTINGS
from tests.helpers import app_client, assert_envelope
from tests.push.conftest import with_devices
from tests.push.test_devices_api import new_user, subscription
from tidings.core.migrations import migrate
from tidings.users.app import create_app
from tidings.users.settings import UsersSettings


async def _users(pg_database: str, **limits: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = UsersSettings(database_url=pg_database, **SETTINGS, **limits)
    await asyncio.to_thread(migrate, "tidings.users", settings.store_url, "users")
    async with app_client(with_devices(create_app(settings))) as client:
        yield client


@pytest.fixture
async def capped(pg_database: str) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _users(pg_database, max_devices_per_user=3):
        yield client


@pytest.fixture
async def limited(pg_database: str) -> AsyncIterator[httpx.AsyncClient]:
    # A burst of 3, then one registration per 1000 s: the fourth is refused in any test run.
    async for client in _users(
        pg_database, device_register_burst=3, device_register_rate_per_s=0.001
    ):
        yield client


def _webpush(n: int) -> dict[str, Any]:
    return {"kind": "webpush", "subscription": subscription(f"https://push.example.net/s/{n}")}


async def test_devices_per_user_are_capped_and_dead_ones_make_room(
    capped: httpx.AsyncClient,
) -> None:
    user_id = await new_user(capped)
    base = f"/api/v1/users/{user_id}/devices/"
    made = []
    for n in range(3):
        answer = await capped.post(base, json=_webpush(n))
        assert answer.status_code == 201, answer.text
        made.append(answer.json()["data"]["device_id"])

    refused = await capped.post(base, json=_webpush(3))
    assert refused.status_code == 409, refused.text
    assert_envelope(refused.json(), success=False)
    assert "3 devices, the most allowed" in refused.json()["error"]
    # Registering one the user already has is no new device: still fine.
    assert (await capped.post(base, json=_webpush(0))).status_code == 200

    dead = await capped.post(f"{base}{made[1]}/dead/", json={"reason": "410 gone"})
    assert dead.status_code == 200
    assert (await capped.post(base, json=_webpush(3))).status_code == 201
    listed = (await capped.get(base)).json()
    assert listed["meta"]["total"] == 3
    assert made[1] not in {d["device_id"] for d in listed["data"]}


async def test_registrations_are_rate_limited_per_user(limited: httpx.AsyncClient) -> None:
    user_id, other_id = await new_user(limited), await new_user(limited)
    base = f"/api/v1/users/{user_id}/devices/"
    for n in range(3):
        assert (await limited.post(base, json=_webpush(n))).status_code == 201
    refused = await limited.post(base, json=_webpush(3))
    assert refused.status_code == 429, refused.text
    assert_envelope(refused.json(), success=False)
    assert int(refused.headers["retry-after"]) >= 1
    assert "device registrations" in refused.json()["error"]
    # Another user's bucket is their own.
    other = await limited.post(f"/api/v1/users/{other_id}/devices/", json=_webpush(0))
    assert other.status_code == 201
