"""The bus fixture of the contract tests: each test runs against both adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tidings.core.bus import Bus
from tidings.core.bus.memory import MemoryBus
from tidings.core.bus.rabbit import RabbitBus

LIMIT = 3


@pytest.fixture(params=["memory", "rabbitmq"])
async def bus(request: pytest.FixtureRequest, amqp_vhost: str) -> AsyncIterator[Bus]:
    adapter: Bus = (
        MemoryBus(delivery_limit=LIMIT)
        if request.param == "memory"
        else RabbitBus(amqp_vhost, delivery_limit=LIMIT)
    )
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.close()
