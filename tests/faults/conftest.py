from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.faults.proxy import TcpProxy
from tests.system import System, start_system

Start = Callable[..., Awaitable[System]]


class Proxies:
    """TCP proxies in front of local ports (tests/faults/proxy.py), made by a scenario."""

    def __init__(self) -> None:
        self.made: list[TcpProxy] = []

    async def __call__(self, port: int) -> TcpProxy:
        proxy = TcpProxy(port)
        await proxy.start()
        self.made.append(proxy)
        return proxy


@pytest.fixture
async def proxy_to() -> AsyncIterator[Proxies]:
    """make_system asks for this fixture, so a scenario's proxies are restored before its
    systems stop and closed only after: a system whose dependency is still cut at teardown
    cannot stop cleanly, and one left running keeps retrying on the event loop that every
    later test shares."""
    proxies = Proxies()
    yield proxies
    for proxy in proxies.made:
        await proxy.close()


@pytest.fixture
async def make_system(
    fresh_pg: str, fresh_vhost: str, redis_url: str, cache_namespace: str, proxy_to: Proxies
) -> AsyncIterator[Start]:
    """Start the services in process with a scenario's settings; stopped at the end, with
    every proxy of the scenario flowing again first."""
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
    for proxy in proxy_to.made:
        await proxy.restore()
    for system in started:
        await system.close()
