"""The users service down: the gateway keeps accepting with the last known data, says so in
/health, and the notifications are delivered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.helpers import wait_for_condition
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System

CACHE_TTL_S = 0.2


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, Any]:
    return {"user_cache_ttl_s": CACHE_TTL_S}


async def test_accepted_and_delivered_with_the_last_known_preferences(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    first = await gw.post(
        "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
    )
    assert first.status_code == 202  # the gateway has now seen this user
    await system.stop_service("users")
    # Past the cache's lifetime: only the last known copy is left (the expiry is under test).
    await asyncio.sleep(CACHE_TTL_S * 2)
    during = await gw.post(
        "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
    )
    assert during.status_code == 202, during.text
    health: dict = {}

    async def degraded() -> bool:
        # /health's checks are cached for a second (core.web.HealthRegistry).
        health.update((await gw.get("/health")).json())
        return health["success"] is False

    await wait_for_condition(degraded, timeout_s=10, what="/health degraded")
    checks = health["data"]["checks"]
    assert checks["users_service"] != "ok"
    assert "last known" in checks["users_data"]
    await wait_for_status(gw, during.json()["data"]["notification_id"], "delivered")
    # Never seen before: nothing to fall back on, a clear 503.
    stranger = notification("00000000-0000-0000-0000-0000000000ff", template["code"])
    refused = await gw.post("/api/v1/notifications/", json=stranger)
    assert refused.status_code == 503
    await system.start_service("users")
