from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.system import System, start_system


@pytest.fixture(scope="module")
async def system(
    pg_database: str, amqp_vhost: str, redis_url: str, cache_namespace: str
) -> AsyncIterator[System]:
    """The five services in process, on PostgreSQL, RabbitMQ and Redis."""
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
