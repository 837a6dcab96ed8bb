"""The cache port's contract (tidings.core.cache), run against both adapters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.faults.proxy import TcpProxy
from tests.helpers import wait_for_condition
from tidings.core.breaker import BreakerOpen
from tidings.core.cache import Cache, MemoryCache, RedisCache, RedisOptions, shared_redis
from tidings.core.discovery import Registry
from tidings.core.errors import DependencyUnavailable, StoreUnavailable
from tidings.core.ratelimit import RedisRateLimiter


@pytest.fixture(params=["memory", "redis"])
async def cache(
    request: pytest.FixtureRequest, redis_url: str, cache_namespace: str
) -> AsyncIterator[Cache]:
    adapter: Cache = (
        MemoryCache() if request.param == "memory" else RedisCache(redis_url, cache_namespace)
    )
    try:
        yield adapter
    finally:
        await adapter.close()


async def test_set_get_delete(cache: Cache) -> None:
    key = uuid.uuid4().hex
    assert await cache.get(key) is None
    await cache.set(key, b"\x00value")
    assert await cache.get(key) == b"\x00value"
    await cache.set(key, b"other", ttl_s=60)
    assert await cache.get(key) == b"other"
    await cache.delete(key)
    assert await cache.get(key) is None
    await cache.delete(key)  # deleting a missing key is fine


async def test_entries_expire(cache: Cache) -> None:
    key = uuid.uuid4().hex
    await cache.set(key, b"short", ttl_s=0.05)
    assert await cache.get(key) == b"short"
    # The expiry itself is what is under test here, so this test waits past it.
    await asyncio.sleep(0.1)
    assert await cache.get(key) is None


async def test_ping(cache: Cache) -> None:
    await cache.ping()


async def test_unreachable_redis_is_dependency_unavailable() -> None:
    dead = RedisCache("redis://127.0.0.1:1/0", "x")
    try:
        with pytest.raises(DependencyUnavailable):
            await dead.get("k")
    finally:
        await dead.close()


async def test_add_stores_only_once(cache: Cache) -> None:
    key = uuid.uuid4().hex
    assert await cache.add(key, b"first", ttl_s=60) is True
    assert await cache.add(key, b"second", ttl_s=60) is False
    assert await cache.get(key) == b"first"


async def test_a_hanging_redis_opens_the_breaker_and_then_costs_nothing(
    redis_url: str, cache_namespace: str
) -> None:
    """Through a stalled proxy: the first calls time out (short), then the breaker refuses
    without touching Redis; after the reset, a probe finds it back."""
    options = RedisOptions(
        connect_timeout_s=0.2, timeout_s=0.2, breaker_failures=2, breaker_reset_s=0.5
    )
    async with TcpProxy(6379) as proxy:
        cache = RedisCache(proxy.url(redis_url), cache_namespace, options)
        try:
            await cache.set("k", b"v", ttl_s=60)
            proxy.stall()
            for _ in range(2):
                with pytest.raises(StoreUnavailable):
                    await cache.get("k")
            connections = proxy.connections
            with pytest.raises(BreakerOpen):
                await cache.get("k")
            assert proxy.connections == connections  # refused without trying Redis
            await proxy.restore()

            async def back() -> bool:
                try:
                    return await cache.get("k") == b"v"
                except DependencyUnavailable:
                    return False

            await wait_for_condition(back, timeout_s=10, what="the probe closes the breaker")
            assert cache.breaker.state == "closed"
        finally:
            await cache.close()


async def test_cache_rate_limits_and_discovery_share_one_redis_client(
    redis_url: str, cache_namespace: str
) -> None:
    """One pool and one breaker per process: an outage the cache meets is the rate limits'
    and discovery's outage too, counted once. The last user to close closes it."""
    # A URL of its own (the same server and settings): the suite's loop is shared, and an
    # earlier test's system still holding the plain URL's client would count as a user here.
    redis_url = f"{redis_url}{'&' if '?' in redis_url else '?'}health_check_interval=0"
    cache = RedisCache(redis_url, cache_namespace)
    limiter = RedisRateLimiter(redis_url, cache_namespace)
    registry = Registry(redis_url, cache_namespace)
    shared = shared_redis(redis_url)
    try:
        assert cache.breaker is limiter._redis.breaker is registry._redis.breaker
        assert shared is limiter._redis is registry._redis
        await asyncio.gather(cache.ping(), limiter.take("k", 1.0, 5), registry.instances("x"))
    finally:
        for user in (cache, limiter, registry):
            await user.close()
    await shared.run(lambda r: r.ping())  # still open: one user left
    await shared.close()
    again = shared_redis(redis_url)
    try:
        assert again is not shared  # closed by the last: the next use makes a new one
    finally:
        await again.close()
