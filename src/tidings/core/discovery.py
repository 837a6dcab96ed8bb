"""Service discovery: every HTTP service registers itself in Redis with a heartbeat, and the
others find it by name, spreading calls over the instances alive.

An instance is a member of the sorted set ``<ns>:svc:<name>`` whose score is when its
registration expires; it renews it every ``heartbeat_s`` and removes it when it stops. A
crashed instance drops out when its score passes. Readers keep the list for ``refresh_s``.
A static URL (TIDINGS_USERS_URL, …) or no Redis (the embedded default) means no discovery:
the static address is used, as it is when no instance is registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("tidings.discovery")
INSTANCE_HEADER = "X-Tidings-Instance"


class Registry:
    def __init__(
        self, url: str, namespace: str, *, ttl_s: float = 6.0, refresh_s: float = 1.0
    ) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=8, timeout=5, socket_timeout=2, socket_connect_timeout=2
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.refresh_s = refresh_s
        self._seen: dict[str, tuple[float, list[str]]] = {}

    def _key(self, service: str) -> str:
        return f"{self.namespace}:svc:{service}"

    async def register(self, service: str, url: str) -> None:
        await self._redis.zadd(self._key(service), {url: time.time() + self.ttl_s})

    async def deregister(self, service: str, url: str) -> None:
        await self._redis.zrem(self._key(service), url)

    async def instances(self, service: str) -> list[str]:
        """The instances alive (cached ``refresh_s``); [] when none, or Redis is down."""
        now = time.monotonic()
        cached = self._seen.get(service)
        if cached is not None and now - cached[0] < self.refresh_s:
            return cached[1]
        try:
            key = self._key(service)
            await self._redis.zremrangebyscore(key, "-inf", time.time())
            members = await self._redis.zrangebyscore(key, time.time(), "+inf")
            found = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        except RedisError as exc:
            log.warning("discovery unavailable, using what was seen last: %s", exc)
            found = cached[1] if cached else []
        self._seen[service] = (now, found)
        return found

    async def close(self) -> None:
        await self._redis.aclose()


class Endpoints:
    """Where to reach one service: round robin over the registered instances, or the
    static URL when discovery is off or finds nobody."""

    def __init__(self, service: str, static_url: str, registry: Registry | None) -> None:
        self.service = service
        self.static_url = static_url.rstrip("/")
        self.registry = registry
        self._turn = itertools.count()

    async def pick(self) -> str:
        if self.registry is None:
            return self.static_url
        found = await self.registry.instances(self.service)
        if not found:
            return self.static_url
        return found[next(self._turn) % len(found)]

    async def seen(self) -> list[str]:
        if self.registry is None:
            return [self.static_url]
        return await self.registry.instances(self.service) or [self.static_url]


class Heartbeat:
    """Keeps one instance registered while it runs."""

    def __init__(self, registry: Registry, service: str, url: str, every_s: float) -> None:
        self.registry = registry
        self.service = service
        self.url = url
        self.every_s = every_s
        self.instance_id = uuid.uuid4().hex[:12]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.registry.register(self.service, self.url)
        self._task = asyncio.create_task(self._beat(), name=f"heartbeat-{self.service}")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.registry.register(self.service, self.url)
            except RedisError as exc:
                log.warning("heartbeat not sent: %s", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError):
            await self.registry.deregister(self.service, self.url)
