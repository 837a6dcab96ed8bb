from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.system import System, start_system


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, Any]:
    """Settings a test module wants different (it overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
async def system(
    pg_database: str,
    amqp_vhost: str,
    redis_url: str,
    cache_namespace: str,
    system_overrides: dict[str, Any],
) -> AsyncIterator[System]:
    """The five services in process, on PostgreSQL, RabbitMQ and Redis."""
    started = await start_system(
        database_url=pg_database,
        amqp_url=amqp_vhost,
        redis_url=redis_url,
        cache_namespace=cache_namespace,
        **system_overrides,
    )
    try:
        yield started
    finally:
        await started.close()
