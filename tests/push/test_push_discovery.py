"""The push worker finds the users service as the other services do: through discovery, when
Redis is there and no static URL is set. Its users client had no registry, so it only ever
called the static URL (one instance, and none at all where that URL is not served)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers import wait_for_condition
from tests.system import System, start_system
from tidings.core.discovery import Registry

ELSEWHERE = "http://127.0.0.1:9"  # an instance only the registry knows of


@pytest.fixture(scope="module")
async def system(
    pg_database: str, amqp_vhost: str, redis_url: str, cache_namespace: str
) -> AsyncIterator[System]:
    started = await start_system(
        database_url=pg_database,
        amqp_url=amqp_vhost,
        redis_url=redis_url,
        cache_namespace=cache_namespace,
    )
    try:
        yield started
    finally:
        await started.close()


async def test_the_push_worker_s_users_client_uses_the_registry(system: System) -> None:
    users = system.apps["push"].state.flow.deliver.devices.client
    registry = Registry(system.settings["redis_url"], system.settings["cache_namespace"])
    try:
        await registry.register("users", ELSEWHERE)
        try:

            async def found() -> bool:  # each reader refreshes its list once a second
                return ELSEWHERE in await users.endpoints.seen()

            await wait_for_condition(found, timeout_s=10, what="the registered instance seen")
        finally:
            await registry.deregister("users", ELSEWHERE)
    finally:
        await registry.close()
