"""The throughput limits switched off (`TIDINGS_RATE_LIMIT_PER_S=0`,
`TIDINGS_RECIPIENT_RATE_PER_S=0`): the accept route makes no Redis round trip for them, and
nothing is refused for a rate; a key with a rate of its own is still held to it (the
benchmark runs this way: issue #17, "limits off")."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.gateway.test_accept_limits import KEY_BURST, counting_scripts, new_key
from tests.scenario import create_template, create_user, notification
from tests.system import System

URL = "/api/v1/notifications/"
SENT = 40  # to one recipient: over any burst a limit could have


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, Any]:
    # A recipient burst of 1: were the limit on, the second notification would be 429.
    return {"rate_limit_per_s": 0, "recipient_rate_per_s": 0, "recipient_burst": 1}


async def key_of_the_default_rate(system: System) -> dict[str, str]:
    made = await system.gateway.post(
        "/api/v1/admin/api-keys/",
        json={"name": f"k-{uuid.uuid4().hex[:6]}", "scopes": ["notifications:send"]},
    )
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['data']['key']}"}


async def test_limits_off_accept_everything_without_a_round_trip(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    key = await key_of_the_default_rate(system)
    # The key's first use looks it up (charged to the address's limit of look-ups).
    first = notification(user["user_id"], template["code"])
    accepted = await gw.post(URL, json=first, headers=key)
    assert accepted.status_code == 202, accepted.text
    count = counting_scripts(system)
    codes = [
        (
            await gw.post(URL, json=notification(user["user_id"], template["code"]), headers=key)
        ).status_code
        for _ in range(SENT)
    ]
    # A repeat gives nothing back either: no token was taken.
    again = await gw.post(URL, json=first, headers=key)
    assert again.json()["data"]["notification_id"] == accepted.json()["data"]["notification_id"], (
        again.text
    )
    assert codes == [202] * SENT
    assert count() == 0


async def test_a_key_with_its_own_rate_is_still_limited(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    key = await new_key(system)  # its own rate and a burst of KEY_BURST
    codes = [
        (
            await gw.post(URL, json=notification(user["user_id"], template["code"]), headers=key)
        ).status_code
        for _ in range(KEY_BURST + 1)
    ]
    assert codes == [202] * KEY_BURST + [429]
