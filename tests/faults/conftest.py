from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.system import System, start_system

Start = Callable[..., Awaitable[System]]


@pytest.fixture
async def make_system(
    fresh_pg: str, fresh_vhost: str, redis_url: str, cache_namespace: str
) -> AsyncIterator[Start]:
    """Start the services in process with a scenario's settings; stopped at the end."""
    started: list[System] = []

    async def start(**overrides: Any) -> System:
        settings: dict[str, Any] = {
            "database_url": fresh_pg,
            "amqp_url": fresh_vhost,
            "redis_url": redis_url,
            # Each system its own namespace (the service registry lives there): a system
            # stopped by an earlier test of the module must not be found by this one.
            "cache_namespace": f"{cache_namespace}-{uuid.uuid4().hex[:6]}",
            "retry_base_s": 1.0,
            **overrides,
        }
        system = await start_system(**settings)
        started.append(system)
        return system

    yield start
    for system in started:
        await system.close()
