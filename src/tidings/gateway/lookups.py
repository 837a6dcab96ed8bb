"""The gateway's view of users: cached in process and in Redis, with the last known copy
kept to serve while the users service is down.

Redis down: the cache degrades (docs/delivery.md, "Redis down"): reads go through to the
users service, nothing is stored, and the Redis breaker makes each of those cost nothing.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson

from tidings.core.cache import Cache, MemoryCache
from tidings.core.errors import DependencyUnavailable
from tidings.core.metrics import CACHE, REDIS_DEGRADED, child
from tidings.core.web import ServiceClient

log = logging.getLogger(__name__)

# The in-process layer is short-lived: other replicas' updates reach it within this time.
LOCAL_TTL_S = 5.0
# The last known copy serves during an outage of the users service, for up to a week.
LAST_KNOWN_TTL_S = 7 * 24 * 3600.0


class UserDirectory:
    """Users by id for the gateway: in process, then Redis, then the users service; the
    last known copy while that service is down (module docstring)."""

    def __init__(self, client: ServiceClient, cache: Cache, ttl_s: float) -> None:
        self.client = client
        self.cache = cache
        self.ttl_s = ttl_s
        self._local = MemoryCache(max_entries=50_000)
        self.degraded: str | None = None
        self._cache_down = False

    def _cache_failed(self, exc: DependencyUnavailable, outcome: str) -> None:
        REDIS_DEGRADED.labels("users_cache", outcome).inc()
        if not self._cache_down:  # one line per outage, not one per request
            log.warning("user cache unavailable, reading through to the users service: %s", exc)
            self._cache_down = True

    async def _cache_get(self, key: str) -> bytes | None:
        try:
            found = await self.cache.get(key)
        except DependencyUnavailable as exc:
            self._cache_failed(exc, "read_through")
            return None
        if self._cache_down:
            log.info("user cache available again")
            self._cache_down = False
        return found

    async def _cache_set(self, key: str, value: bytes, ttl_s: float | None) -> None:
        try:
            await self.cache.set(key, value, ttl_s)
        except DependencyUnavailable as exc:
            self._cache_failed(exc, "not_stored")

    async def get(self, user_id: uuid.UUID) -> dict[str, Any]:
        """The user's contact data and preferences; raises NotFound for an unknown user."""
        key = f"user:{user_id}"
        raw = await self._local.get(key)
        child(CACHE, "users_local", "miss" if raw is None else "hit").inc()
        if raw is not None:
            # Not stored again: that renewed the entry's time on every use, so a busy
            # recipient's copy never expired and another replica's change never reached it.
            return dict(orjson.loads(raw))
        raw = await self._cache_get(key)
        child(CACHE, "users_redis", "miss" if raw is None else "hit").inc()
        if raw is None:
            try:
                user: dict[str, Any] = await self.client.get(f"/api/v1/users/{user_id}/")
            except DependencyUnavailable as exc:
                stale = await self._cache_get(f"user-last:{user_id}")
                if stale is None:
                    raise
                self.degraded = f"users service unreachable, serving last known data: {exc}"
                log.warning("serving last known data for user %s: %s", user_id, exc)
                return dict(orjson.loads(stale))
            self.degraded = None
            raw = orjson.dumps(user)
            await self._cache_set(key, raw, self.ttl_s)
            await self._cache_set(f"user-last:{user_id}", raw, LAST_KNOWN_TTL_S)
        await self._local.set(key, raw, min(LOCAL_TTL_S, self.ttl_s))
        return dict(orjson.loads(raw))

    async def forget(self, user_id: uuid.UUID) -> None:
        """Drop the cached copy (the last known one stays, for outages)."""
        key = f"user:{user_id}"
        await self._local.delete(key)
        try:
            await self.cache.delete(key)
        except DependencyUnavailable as exc:
            # The Redis copy outlives this for at most the cache TTL (other replicas).
            log.warning("user cache unavailable, could not drop %s: %s", key, exc)

    async def health(self) -> str | None:
        return self.degraded
