"""The database engine on a multi-host URL and the shared Redis client behind Sentinel, as
clients of the local primary/standby and master/replica (deploy/cluster/local.sh): each
follows the new primary or master, and every failure on the way is an outage (503), never
anything else."""

from __future__ import annotations

import time
from collections import Counter

import asyncpg
import pytest
from sqlalchemy import text

from tests.cluster.conftest import PG_PORTS, ascript
from tests.helpers import wait_for_condition
from tidings.core.cache import SentinelUrl, shared_redis
from tidings.core.db import DRIVER_ERRORS, DbTimeouts, again_if_lost, engine_for, unavailable
from tidings.core.errors import DependencyUnavailable

pytestmark = pytest.mark.timeout(150)

PG_URL = (
    f"postgresql+asyncpg://root@/postgres?host=127.0.0.1:{PG_PORTS[0]}"
    f"&host=127.0.0.1:{PG_PORTS[1]}&target_session_attrs=read-write"
)


def test_sentinel_url_parts() -> None:
    url = SentinelUrl.parse("redis+sentinel://u:p%40ss@h1:26379,h2/main/3?sentinel_password=s")
    assert url == SentinelUrl((("h1", 26379), ("h2", 26379)), "main", 3, "u", "p@ss", "s")
    assert SentinelUrl.parse("redis://127.0.0.1:6379/0") is None
    with pytest.raises(ValueError, match="names its sentinels"):
        SentinelUrl.parse("redis+sentinel://h1:26379/")


async def test_the_engine_follows_the_promoted_standby(pg_cluster: None) -> None:
    """Stop the primary (immediate), promote the standby: meanwhile every write fails as an
    outage (503 at the HTTP edge); after the promotion writes go to the new primary."""
    await ascript("pg-rebuild")
    timeouts = DbTimeouts(connect_s=2, statement_s=5, pool_s=2, breaker_reset_s=0.5)
    engine = engine_for(PG_URL, "public", pool_size=2, timeouts=timeouts)
    failures: Counter[str] = Counter()

    async def write() -> bool:
        async def once() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE IF NOT EXISTS probe (at float)"))
                await conn.execute(text("INSERT INTO probe VALUES (:t)"), {"t": time.time()})

        try:
            await again_if_lost(once)
        except DependencyUnavailable as exc:
            failures["breaker"] += 1
            assert exc.status_code == 503
            return False
        except DRIVER_ERRORS as exc:
            reason = unavailable(exc)
            assert reason is not None, f"not an outage: {exc!r}"  # would be a 500
            failures[type(exc).__name__] += 1
            return False
        return True

    try:
        assert await write()
        await ascript("pg-stop-primary")
        for _ in range(5):
            assert not await write()
        await ascript("pg-promote")
        promoted = time.monotonic()
        await wait_for_condition(write, timeout_s=30, interval_s=0.1, what="a write after")
        assert time.monotonic() - promoted < 10
        conn = await asyncpg.connect(f"postgresql://root@127.0.0.1:{PG_PORTS[1]}/postgres")
        assert not await conn.fetchval("SELECT pg_is_in_recovery()")
        assert await conn.fetchval("SELECT count(*) FROM probe") >= 2
        await conn.close()
    finally:
        await engine.dispose()
        await ascript("pg-rebuild")
    assert failures


async def test_the_shared_client_follows_the_master_sentinel_promotes(
    redis_sentinel: str,
) -> None:
    client = shared_redis(redis_sentinel)
    killed = None
    try:
        await client.run(lambda r: r.set("cluster-probe", b"1"))
        killed = (await ascript("redis-kill-master")).strip()
        outages = 0

        async def written() -> bool:
            nonlocal outages
            try:
                await client.run(lambda r: r.set("cluster-probe", b"2"))
            except DependencyUnavailable:
                outages += 1
                return False
            return True

        await wait_for_condition(written, timeout_s=30, interval_s=0.2, what="the new master")
        master = (await ascript("redis-master")).strip()
        assert master != killed
        assert await client.run(lambda r: r.get("cluster-probe")) == b"2"
        assert outages >= 1
    finally:
        await client.close()
        if killed:
            await ascript("redis-start", killed)  # Sentinel makes it a replica of the new one
