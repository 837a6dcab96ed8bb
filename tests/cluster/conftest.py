"""The local cluster of deploy/cluster/local.sh, started for the tests that need it and stopped
after them: three RabbitMQ nodes, a PostgreSQL primary with a standby, Redis with a replica and
three Sentinels, all on ports and data dirs of their own (never the machine's services).

A part already running (started by hand with ``local.sh up``) is used as it is and left
running. Each part skips cleanly, with the reason, when its binaries are missing."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "cluster" / "local.sh"
RABBIT_PORTS = (5681, 5682, 5683)
PG_PORTS = (5441, 5442)
REDIS_MASTER_NAME = "tidings"
SENTINELS = ("127.0.0.1:26391", "127.0.0.1:26392", "127.0.0.1:26393")
NEEDS = {
    "rabbit": ("/usr/lib/rabbitmq/bin/rabbitmq-server", "epmd"),
    "pg": ("runuser",),
    "redis": ("redis-server", "redis-cli"),
}


def _missing(part: str) -> str | None:
    for binary in NEEDS[part]:
        if not (Path(binary).exists() if binary.startswith("/") else shutil.which(binary)):
            return f"{part}: {binary} not installed"
    if part == "pg" and not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        return "pg: no PostgreSQL server binaries under /usr/lib/postgresql"
    return None


def script(*args: str, timeout: float = 180) -> str:
    """Run local.sh (blocking: for fixtures, outside any test's work)."""
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise AssertionError(f"local.sh {' '.join(args)}: {done.stderr[-2000:]}")
    return done.stdout


async def ascript(*args: str, limit_s: float = 180) -> str:
    """Run local.sh from a test, without blocking the event loop its system runs on."""
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(SCRIPT),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    if proc.returncode != 0:
        raise AssertionError(f"local.sh {' '.join(args)}: {err.decode()[-2000:]}")
    return out.decode()


def _running(part: str) -> bool:
    status = script("status")
    lines = {
        "rabbit": [f"rabbit c{n}: up" for n in (1, 2, 3)],
        "pg": ["pg primary: up", "pg standby: up"],
        "redis": ["redis master: 63"],
    }[part]
    return all(line in status for line in lines)


def _part(part: str) -> Iterator[None]:
    reason = _missing(part)
    if reason is not None:
        pytest.skip(reason)
    if os.environ.get("SKIP_CLUSTER_TESTS"):
        pytest.skip("SKIP_CLUSTER_TESTS is set")
    ours = not _running(part)
    try:
        if ours:
            script("down", part)  # leftovers of a run that died
            script("up", part)
        yield
    finally:
        if ours:
            script("down", part)


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[None]:
    yield from _part("rabbit")


@pytest.fixture(scope="session")
def rabbit_nodes(rabbit_cluster: None) -> list[str]:
    """The three nodes' AMQP base URLs (no vhost)."""
    return [f"amqp://guest:guest@127.0.0.1:{p}" for p in RABBIT_PORTS]


@pytest.fixture
def cluster_vhost(rabbit_nodes: list[str]) -> Iterator[list[str]]:
    """A vhost of its own on the cluster; yields each node's URL of it."""
    vhost = f"tidings-test-{uuid.uuid4().hex[:8]}"
    script("rabbitmqctl", "1", "add_vhost", vhost)
    script("rabbitmqctl", "1", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield [f"{node}/{vhost}" for node in rabbit_nodes]
    finally:
        script("rabbitmqctl", "1", "delete_vhost", vhost)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[None]:
    yield from _part("pg")


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[str]:
    """The Sentinel URL of the local Redis (master name ``tidings``)."""
    for _ in _part("redis"):
        yield f"redis+sentinel://{','.join(SENTINELS)}/{REDIS_MASTER_NAME}/0"


@pytest.fixture
async def failover_db(pg_cluster: None) -> AsyncIterator[tuple[str, str, str]]:
    """A fresh primary and standby, and a database on them: (the multi-host URL, the
    primary's and the standby's own URLs). Rebuilt afterwards: the standby was promoted."""
    await ascript("pg-rebuild")
    name = f"tidings_cluster_{uuid.uuid4().hex[:8]}"
    primary, standby = (f"postgresql://root@127.0.0.1:{p}/{name}" for p in PG_PORTS)
    conn = await asyncpg.connect(f"postgresql://root@127.0.0.1:{PG_PORTS[0]}/postgres")
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    hosts = "&".join(f"host=127.0.0.1:{p}" for p in PG_PORTS)
    yield f"postgresql://root@/{name}?{hosts}&target_session_attrs=read-write", primary, standby
    await ascript("pg-rebuild")
