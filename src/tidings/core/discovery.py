"""Service discovery: every HTTP service registers itself in Redis with a heartbeat, and the
others find it by name, spreading calls over the instances alive.

An instance is a member of the sorted set ``<ns>:svc:<name>`` whose score is when its
registration expires, in Redis's own clock (TIME, inside the script that writes or reads it):
no process's clock takes part, so an instance whose clock is off neither outlives its
heartbeats nor expires the others' (docs/decisions.md, "Service discovery"). It renews it
every ``heartbeat_s`` and removes it when it stops; a crashed instance drops out when its
score passes. Readers keep the list for ``refresh_s``, and keep the last list seen while
Redis is down. A static URL (TIDINGS_USERS_URL, …) or no Redis (the embedded default) means
no discovery: the static address is used, as it is when no instance is registered.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
import uuid

from tidings.core.cache import RedisOptions, redis_ms, shared_redis
from tidings.core.errors import DependencyUnavailable
from tidings.core.metrics import REDIS_DEGRADED
from tidings.core.tasks import Periodic

log = logging.getLogger(__name__)
INSTANCE_HEADER = "X-Tidings-Instance"

# Redis's clock, in ms: the only clock registrations are compared with.
_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
_REGISTER = (
    _NOW
    + "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) "
    # The set itself goes when no instance has renewed for a TTL.
    + "redis.call('PEXPIRE', KEYS[1], ARGV[2]) return now"
)
_ALIVE = (
    _NOW
    + "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) "
    + "return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')"
)


class Registry:
    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        ttl_s: float = 6.0,
        refresh_s: float = 1.0,
        options: RedisOptions | None = None,
    ) -> None:
        self._redis = shared_redis(url, options)
        self._register = self._redis.redis.register_script(_REGISTER)
        self._alive = self._redis.redis.register_script(_ALIVE)
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.refresh_s = refresh_s
        self._seen: dict[str, tuple[float, list[str]]] = {}
        self._down = False

    def _key(self, service: str) -> str:
        return f"{self.namespace}:svc:{service}"

    async def register(self, service: str, url: str) -> None:
        """Raises DependencyUnavailable while Redis is down."""
        key, ttl_ms = self._key(service), redis_ms(self.ttl_s)
        await self._redis.run(lambda _: self._register(keys=[key], args=[url, ttl_ms]))

    async def deregister(self, service: str, url: str) -> None:
        await self._redis.run(lambda r: r.zrem(self._key(service), url))

    async def instances(self, service: str) -> list[str]:
        """The instances alive (cached ``refresh_s``); the last list seen while Redis is
        down; [] when none."""
        now = time.monotonic()  # times only this reader's copy of the list
        cached = self._seen.get(service)
        if cached is not None and now - cached[0] < self.refresh_s:
            return cached[1]
        try:
            key = self._key(service)
            members = await self._redis.run(lambda _: self._alive(keys=[key]))
            found = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
            self._down = False
        except DependencyUnavailable as exc:
            REDIS_DEGRADED.labels("discovery", "last_known").inc()
            if not self._down:  # one line per outage
                log.warning("discovery unavailable, using what was seen last: %s", exc)
                self._down = True
            found = cached[1] if cached else []
        self._seen[service] = (now, found)
        return found

    async def close(self) -> None:
        await self._redis.close()


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
        # The first beat after ``every_s``: start registers at once.
        self._beats = Periodic(f"heartbeat-{service}", self._beat, every_s, first_wait=True)

    async def start(self) -> None:
        await self.registry.register(self.service, self.url)
        self._beats.start()

    async def _beat(self) -> None:
        await self.registry.register(self.service, self.url)

    async def stop(self) -> None:
        await self._beats.stop()
        with contextlib.suppress(DependencyUnavailable):
            await self.registry.deregister(self.service, self.url)
