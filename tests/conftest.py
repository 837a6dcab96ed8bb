"""Fixtures for the real infrastructure: a fresh PostgreSQL database, a fresh RabbitMQ vhost
and a fresh Redis namespace per test run, so runs never see each other's data.

Defaults are this machine's services; override with TIDINGS_TEST_PG_URL (a database the
run can CREATE DATABASE from), TIDINGS_TEST_AMQP_URL and TIDINGS_TEST_REDIS_URL.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

RUN_ID = uuid.uuid4().hex[:10]
PG_ADMIN_URL = os.environ.get("TIDINGS_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("TIDINGS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _pg(statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _database_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """Yields a factory-free URL of a database made for this run (dropped at the end)."""
    name = f"tidings_test_{RUN_ID}"
    _pg(f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(name)
    finally:
        _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """A database of its own for one test (for tests that start whole systems)."""
    name = f"tidings_test_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    _pg(f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(name)
    finally:
        _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def _vhost() -> Iterator[str]:
    vhost = f"tidings-test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"{AMQP_BASE}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="module")
def amqp_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of its own for one test module; yields its AMQP URL."""
    yield from _vhost()


@pytest.fixture
def fresh_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of its own for one test."""
    yield from _vhost()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture(scope="module")
def cache_namespace() -> str:
    return f"tidings-test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
