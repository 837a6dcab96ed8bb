"""The cache port: bytes by key with a time to live; and the one way to reach Redis.

Adapters: :class:`RedisCache` (shared by every replica) and :class:`MemoryCache` (one
process: the embedded default, and the in-process layer in front of Redis).
:class:`GuardedRedis` (from :func:`shared_redis`) is the one Redis client of a process, which
every Redis user (cache, rate limits, discovery) goes through: short timeouts and a circuit
breaker (docs/delivery.md, "Redis down").
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.parse
import weakref
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tidings.core.breaker import CircuitBreaker
from tidings.core.errors import StoreUnavailable
from tidings.core.settings import TidingsSettings

T = TypeVar("T")
# What a Redis that is down or hanging raises (redis-py wraps most; a socket error can slip).
REDIS_FAILURES = (RedisError, OSError)


@dataclass(frozen=True)
class RedisOptions:
    connect_timeout_s: float
    timeout_s: float
    breaker_failures: int
    breaker_reset_s: float

    @classmethod
    def of(cls, settings: TidingsSettings | None = None) -> RedisOptions:
        """From ``settings``; None: the settings' defaults (tests, tools)."""
        s = settings if settings is not None else TidingsSettings.model_construct()
        return cls(
            s.redis_connect_timeout_s,
            s.redis_timeout_s,
            s.redis_breaker_failures,
            s.redis_breaker_reset_s,
        )


# A Redis behind Sentinel: ``redis+sentinel://[user:password@]host:port,host:port/<master>/<db>``
# (docs/clusters.md). The password is the master's (and its replicas'); a Sentinel that asks for
# one of its own takes it from ``?sentinel_password=``.
SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl | None:
        """The parts of a Sentinel URL; None for any other URL."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme != SENTINEL_SCHEME:
            return None
        rest, _, query = rest.partition("?")
        auth, _, rest = rest.rpartition("@")
        hosts, _, path = rest.partition("/")
        master, _, db = path.strip("/").partition("/")
        if not hosts or not master:
            raise ValueError(
                f"a Sentinel URL names its sentinels and master: {SENTINEL_SCHEME}"
                "://host:26379,host2:26379/<master>/<db>"
            )
        user, _, password = auth.partition(":") if auth else ("", "", "")
        params = dict(urllib.parse.parse_qsl(query))
        sentinels = []
        for host in hosts.split(","):
            name, _, port = host.strip().rpartition(":")
            sentinels.append((name or host, int(port) if name else 26379))
        unquote = urllib.parse.unquote
        return cls(
            tuple(sentinels),
            unquote(master),
            int(db or 0),
            unquote(user) or None,
            unquote(password) or None,
            params.get("sentinel_password"),
        )


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool (connections to the master of the moment), waiting for a free
    connection like the plain pool instead of failing under a burst."""


def redis_for(
    url: str, *, blocking: bool = False, **kwargs: Any
) -> tuple[aioredis.Redis, Callable[[], Awaitable[None]]]:
    """A redis.asyncio client for ``url`` (``redis://``, ``rediss://``, ``unix://`` or
    ``redis+sentinel://``) and the coroutine function that closes it (with its Sentinel
    clients). ``blocking``: a pool that waits for a free connection (``timeout``)."""
    found = SentinelUrl.parse(url)
    if found is None:
        pool_class = aioredis.BlockingConnectionPool if blocking else aioredis.ConnectionPool
        client = aioredis.Redis(connection_pool=pool_class.from_url(url, **kwargs))
        return client, client.aclose
    sockets = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    sentinel = Sentinel(
        found.sentinels,
        sentinel_kwargs={**sockets, "password": found.sentinel_password},
        **sockets,
    )
    if not blocking:
        kwargs.pop("timeout", None)
    client = sentinel.master_for(
        found.master,
        connection_pool_class=_BlockingSentinelPool if blocking else SentinelConnectionPool,
        db=found.db,
        username=found.username,
        password=found.password,
        **kwargs,
    )

    async def close() -> None:
        await client.aclose()
        await sentinel.aclose()

    return client, close


class GuardedRedis:
    """A Redis client behind a circuit breaker. A Redis that is down costs the first
    ``breaker_failures`` calls a timeout each (short: ``timeout_s``), then nothing: the
    breaker refuses at once (BreakerOpen, a DependencyUnavailable) until a probe after
    ``breaker_reset_s`` finds it back. Every failure leaves as DependencyUnavailable.

    Made by :func:`shared_redis` only: one per process and Redis, so its pool and its
    breaker are the cache's, the rate limits' and discovery's alike (one outage, one count)."""

    def __init__(self, url: str, options: RedisOptions) -> None:
        # Behind Sentinel (``redis+sentinel://``) the pool connects to the master Sentinel
        # names, and asks again after a connection fails: a failover is a short outage here.
        self.redis, self._close = redis_for(
            url,
            # Bounded, and waits for a free connection rather than failing under a burst.
            blocking=True,
            max_connections=REDIS_MAX_CONNECTIONS,
            timeout=options.timeout_s,  # waiting for a free connection of the pool
            socket_timeout=options.timeout_s,
            socket_connect_timeout=options.connect_timeout_s,
            # One retry, at once: a pooled connection a Redis restart reset fails once and
            # the retry takes a fresh one. redis-py's default (3, with backoff) multiplied
            # each timeout of a Redis that is down.
            retry=Retry(NoBackoff(), 1),
        )
        self.breaker = CircuitBreaker(
            "redis",
            failure_threshold=options.breaker_failures,
            reset_timeout_s=options.breaker_reset_s,
        )
        self._key = (url, options)
        self._clients: dict[tuple[str, RedisOptions], GuardedRedis] = {}
        self._users = 0

    @classmethod
    def shared_in(
        cls, clients: dict[Any, GuardedRedis], key: tuple[str, RedisOptions]
    ) -> GuardedRedis:
        """The client of ``clients`` (one loop's) for ``key``, made there on first use, with
        one more user: :meth:`close` takes it out of ``clients`` when its last user is done."""
        client = clients.get(key)
        if client is None:
            client = clients[key] = cls(*key)
            client._clients = clients
        client._users += 1
        return client

    async def run(self, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        try:
            async with self.breaker.guard(lambda exc: isinstance(exc, REDIS_FAILURES)):
                return await call(self.redis)
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"Redis: {exc!r}") from exc

    async def close(self) -> None:
        """One user is done with it; the last one closes the pool."""
        self._users -= 1
        if self._users <= 0:
            if self._clients.get(self._key) is self:
                del self._clients[self._key]
            await self._close()


# Every Redis user of a process (cache, rate limits, discovery) together.
REDIS_MAX_CONNECTIONS = 128
# One client per event loop: a redis.asyncio client belongs to the loop it was made on (a
# second loop, e.g. a test's background system in its own thread, would be handed Futures
# of the first: "attached to a different loop"). Weak: a loop gone takes its clients along.
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, GuardedRedis]] = (
    weakref.WeakKeyDictionary()
)
_SHARED_NO_LOOP: dict[Any, GuardedRedis] = {}


def shared_redis(url: str, options: RedisOptions | None = None) -> GuardedRedis:
    """The process's client for ``url``, made on first use; each caller closes it once when
    done with it."""
    key = (url, options or RedisOptions.of())
    try:
        clients = _SHARED.setdefault(asyncio.get_running_loop(), {})
    except RuntimeError:  # made outside a loop: used by the loop that runs it
        clients = _SHARED_NO_LOOP
    return GuardedRedis.shared_in(clients, key)


def redis_ms(ttl_s: float) -> int:
    return max(1, math.ceil(ttl_s * 1000))


class Cache(ABC):
    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store ``value``; ``ttl_s=None`` keeps it until deleted or evicted."""

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Store ``value`` only if ``key`` is absent; True if it was stored (one winner)."""

    @abstractmethod
    async def ping(self) -> None: ...

    async def close(self) -> None:  # noqa: B027 - optional for adapters holding nothing
        pass


class MemoryCache(Cache):
    """A bounded LRU with per-entry expiry, for one process."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._data[key] = (value, time.monotonic() + ttl_s if ttl_s is not None else None)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        if await self.get(key) is not None:
            return False
        await self.set(key, value, ttl_s)
        return True

    async def ping(self) -> None:
        return None


class RedisCache(Cache):
    """Redis through :class:`GuardedRedis`, every key under ``namespace:``. While Redis is
    down every call raises DependencyUnavailable; each caller decides whether to degrade
    (read through, do not store) or refuse (single-use tokens: a replay could pass)."""

    def __init__(
        self, url: str, namespace: str = "tidings", options: RedisOptions | None = None
    ) -> None:
        self.namespace = namespace
        self._redis = shared_redis(url, options)

    @property
    def breaker(self) -> CircuitBreaker:
        return self._redis.breaker

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.run(lambda r: r.get(self._key(key)))
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        px = None if ttl_s is None else redis_ms(ttl_s)
        await self._redis.run(lambda r: r.set(self._key(key), value, px=px))

    async def delete(self, key: str) -> None:
        await self._redis.run(lambda r: r.delete(self._key(key)))

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        stored = await self._redis.run(
            lambda r: r.set(self._key(key), value, px=redis_ms(ttl_s), nx=True)
        )
        return bool(stored)

    async def ping(self) -> None:
        await self._redis.run(lambda r: r.ping())

    async def close(self) -> None:
        await self._redis.close()


def open_cache(redis_url: str | None, namespace: str, options: RedisOptions | None = None) -> Cache:
    return RedisCache(redis_url, namespace, options) if redis_url else MemoryCache()
