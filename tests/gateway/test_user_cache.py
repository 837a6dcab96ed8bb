"""The gateway's in-process copy of a user expires however often it is read: another
replica's change (or one this replica was not told of) reaches it within its time."""

from __future__ import annotations

import uuid

from tests.helpers import wait_for_condition
from tests.scenario import create_user
from tests.system import System
from tidings.core.cache import MemoryCache
from tidings.gateway.lookups import UserDirectory


async def test_a_user_read_all_the_time_is_read_again_when_its_copy_expires(
    system: System,
) -> None:
    gw = system.gateway
    user = await create_user(gw)
    user_id = uuid.UUID(user["user_id"])
    # Another replica's directory (its own copies, a short time), on the same users service.
    replica = UserDirectory(system.apps["gateway"].state.gateway.users.client, MemoryCache(), 0.3)
    assert (await replica.get(user_id))["name"] == user["name"]
    changed = await gw.patch(f"/api/v1/users/{user_id}/", json={"name": "Ada Lovelace"})
    assert changed.status_code == 200, changed.text

    async def renamed() -> bool:
        # Read in a tight loop, as a busy recipient's notifications read it.
        return bool((await replica.get(user_id))["name"] == "Ada Lovelace")

    assert await wait_for_condition(renamed, timeout_s=10, interval_s=0.01, what="renamed")
