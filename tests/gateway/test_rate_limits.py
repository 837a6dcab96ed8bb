"""Rate limits in Redis: per API key and per recipient, 429 with Retry-After, and recovery.
The waits here are the limits' own refill times: they are what is under test."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.helpers import assert_envelope
from tests.scenario import create_template, create_user, notification
from tests.system import System

URL = "/api/v1/notifications/"


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, Any]:
    return {
        "recipient_rate_per_s": 1.0,
        "recipient_burst": 2,
        "login_burst": 3,
        # Slow enough that argon2 on a loaded machine (load 11 measured) does not refill it
        # between the attempts: what is counted is the burst.
        "login_rate_per_s": 0.01,
    }


async def test_per_api_key(system: System) -> None:
    gw = system.gateway
    made = await gw.post(
        "/api/v1/admin/api-keys/",
        json={"name": "slow", "scopes": ["notifications:read"], "rate_per_s": 1, "burst": 3},
    )
    key = {"Authorization": f"Bearer {made.json()['data']['key']}"}
    answers = [await gw.get(URL, headers=key) for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    limited = answers[3]
    assert limited.status_code == 429
    assert_envelope(limited.json(), success=False)
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    await asyncio.sleep(retry_after)
    assert (await gw.get(URL, headers=key)).status_code == 200
    # Another key has its own bucket; the admin key is not limited.
    assert (await gw.get(URL)).status_code == 200


async def test_per_recipient(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    other = await create_user(gw)
    template = await create_template(gw)
    statuses = [
        (await gw.post(URL, json=notification(user["user_id"], template["code"]))).status_code
        for _ in range(3)
    ]
    assert statuses == [202, 202, 429]
    assert (
        await gw.post(URL, json=notification(other["user_id"], template["code"]))
    ).status_code == 202
    batch = await gw.post(
        "/api/v1/notifications/batch/",
        json={"notifications": [notification(user["user_id"], template["code"])]},
    )
    assert batch.json()["data"][0]["outcome"] == "rejected"
    assert "rate limit" in batch.json()["data"][0]["error"]


async def test_login_attempts_per_address(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    codes = [
        (
            await gw.post(
                "/api/v1/auth/login/",
                json={"email": user["email"], "password": "wrong"},
                headers={},
            )
        ).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
