"""Service discovery: a second users-service instance registers, is found and used; one that
stops is dropped (at once when it stops cleanly, after its registration expires otherwise)."""

from __future__ import annotations

import asyncio
import inspect
import sys

import uvicorn

from tests.helpers import free_port, wait_for_condition
from tests.scenario import create_user
from tests.system import System
from tidings.core.discovery import INSTANCE_HEADER, Registry
from tidings.runner import Server
from tidings.users.app import create_app as users_app
from tidings.users.settings import UsersSettings


async def seen(system: System) -> list[str]:
    health = await system.gateway.get("/health")
    return list(health.json()["data"]["instances"]["users"])


async def test_a_second_users_instance_is_found_used_and_dropped(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    assert len(await seen(system)) == 1

    port = free_port()
    second = Server(
        uvicorn.Config(
            users_app(UsersSettings(**{**system.settings, "users_port": port})),
            host="127.0.0.1",
            port=port,
            log_config=None,
        )
    )
    task = asyncio.create_task(second.serve())

    async def two() -> bool:
        return len(await seen(system)) == 2

    await wait_for_condition(two, timeout_s=30, what="the second instance registered")
    served_by = set()
    for _ in range(10):
        answer = await gw.get(f"/api/v1/users/{user['user_id']}/")
        assert answer.status_code == 200
        served_by.add(answer.headers[INSTANCE_HEADER])
    assert len(served_by) == 2, "calls are spread over both instances"

    second.should_exit = True
    await task

    async def one() -> bool:
        return len(await seen(system)) == 1

    await wait_for_condition(one, timeout_s=30, what="the stopped instance dropped")
    for _ in range(4):  # and every call still succeeds
        assert (await gw.get(f"/api/v1/users/{user['user_id']}/")).status_code == 200


async def test_a_registration_that_is_not_renewed_expires(system: System) -> None:
    registry = Registry(system.settings["redis_url"], system.settings["cache_namespace"], ttl_s=4.0)
    try:
        await registry.register("users", "http://127.0.0.1:9/")  # an instance that then died

        async def listed() -> bool:
            return "http://127.0.0.1:9/" in await seen(system)

        await wait_for_condition(listed, timeout_s=10, what="the dead instance listed")

        async def expired() -> bool:
            return "http://127.0.0.1:9/" not in await seen(system)

        await wait_for_condition(expired, timeout_s=30, what="its registration expired")
    finally:
        await registry.close()


# A registrant and reader whose wall clock is two minutes fast: time.time is replaced before
# Tidings is imported, in a process of its own (the test's services keep the real clock).
SKEWED = """
import asyncio, sys, time
_real = time.time
time.time = lambda: _real() + 120
from tidings.core.discovery import Heartbeat, Registry

async def main(url, namespace, mine):
    registry = Registry(url, namespace, ttl_s=4.0, refresh_s=0.0)
    await Heartbeat(registry, "users", mine, every_s=0.5).start()
    for _ in range(40):
        print(" ".join(await registry.instances("users")), flush=True)
        await asyncio.sleep(0.25)
    await asyncio.Event().wait()  # until killed, without deregistering

asyncio.run(main(*sys.argv[1:]))
"""


async def test_an_instance_with_a_fast_clock_deregisters_no_other(system: System) -> None:
    """Registrations expire by Redis's clock: the fast reader still sees the others, and
    the fast registrant, killed, drops out after its TTL (not two minutes later)."""
    ours = f"http://127.0.0.1:{system.settings['users_port']}"
    fast = "http://127.0.0.1:7/"
    assert ours in await seen(system)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SKEWED,
        system.settings["redis_url"],
        system.settings["cache_namespace"],
        fast,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lists = []
        for _ in range(20):  # 5 s of the fast reader's view, heartbeats of both going on
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            lists.append(set(line.decode().split()))
        assert all(ours in found for found in lists), lists
        assert any(fast in found for found in lists), lists

        async def both() -> bool:
            found = await seen(system)
            return ours in found and fast in found

        await wait_for_condition(both, timeout_s=10, what="both listed by the gateway")
    finally:
        proc.kill()  # SIGKILL: no deregistration, its entry must expire by itself
        await proc.wait()

    async def fast_expired() -> bool:
        found = await seen(system)
        return fast not in found and ours in found

    # The TTL is 4 s: expiring by Redis's clock takes that (plus the readers' refresh), by
    # the fast clock it would take two minutes more.
    await wait_for_condition(fast_expired, timeout_s=20, what="the killed fast instance expired")


async def test_the_push_worker_s_users_client_finds_instances_through_discovery(
    system: System,
) -> None:
    """As every other client of another service: its users client had no registry, so it only
    ever called the static URL (one instance; none where that URL is not served)."""
    elsewhere = "http://127.0.0.1:9"  # an instance only the registry knows of
    users = inspect.unwrap(system.apps["push"].state.flow.deliver).devices.client  # type: ignore[attr-defined]
    registry = Registry(system.settings["redis_url"], system.settings["cache_namespace"])
    try:
        await registry.register("users", elsewhere)
        try:

            async def found() -> bool:  # each reader refreshes its list once a second
                return elsewhere in await users.endpoints.seen()

            await wait_for_condition(found, timeout_s=10, what="the registered instance seen")
        finally:
            await registry.deregister("users", elsewhere)
    finally:
        await registry.close()
