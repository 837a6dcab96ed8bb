from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers import free_port
from tests.system import System, start_system


@pytest.fixture(scope="module")
def bounce_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
async def system(
    pg_database: str, amqp_vhost: str, redis_url: str, cache_namespace: str, bounce_port: int
) -> AsyncIterator[System]:
    """The five services in process, the email worker with its bounce receiver."""
    started = await start_system(
        database_url=pg_database,
        amqp_url=amqp_vhost,
        redis_url=redis_url,
        cache_namespace=cache_namespace,
        bounce_port=bounce_port,
    )
    try:
        yield started
    finally:
        await started.close()
