"""The cache port: bytes by key with a time to live.

Adapters: :class:`RedisCache` (shared by every replica) and :class:`MemoryCache` (one
process: the embedded default, and the in-process layer in front of Redis).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tidings.core.errors import DependencyUnavailable


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
    """Redis through redis-py's asyncio client, every key under ``namespace:``."""

    def __init__(self, url: str, namespace: str = "tidings") -> None:
        self.namespace = namespace
        # A bounded pool that waits for a free connection rather than failing under a burst.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=5, socket_timeout=2, socket_connect_timeout=2
        )
        self._redis = aioredis.Redis(connection_pool=pool)

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self._key(key))
            return value.encode() if isinstance(value, str) else value
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        try:
            if ttl_s is None:
                await self._redis.set(self._key(key), value)
            else:
                await self._redis.set(self._key(key), value, px=max(1, int(ttl_s * 1000)))
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc

    async def delete(self, key: str) -> None:
        try:
            await self._redis.delete(self._key(key))
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        try:
            stored = await self._redis.set(
                self._key(key), value, px=max(1, int(ttl_s * 1000)), nx=True
            )
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc
        return bool(stored)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise DependencyUnavailable(f"Redis: {exc}") from exc

    async def close(self) -> None:
        await self._redis.aclose()


def open_cache(redis_url: str | None, namespace: str) -> Cache:
    return RedisCache(redis_url, namespace) if redis_url else MemoryCache()
