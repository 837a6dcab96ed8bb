"""Rate limits: token buckets, in Redis (shared by every gateway replica) or in process.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; each request takes one.
``take`` answers 0 when the request may go, or how many seconds until it may (the
``Retry-After``). Written here rather than with a library because the limit is one Lua script
on the Redis the project already has, and the in-process twin is ten lines.

Redis down (docs/delivery.md, "Redis down"): the limits neither stop (fail open would let one
key, or a password guesser, go unlimited) nor refuse (notifications would stop for want of a
counter): each replica keeps counting in process until Redis is back, so the cluster allows
at most its replicas times the limit meanwhile.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod

from tidings.core.cache import MemoryCache, RedisOptions, shared_redis
from tidings.core.errors import DependencyUnavailable, RetryAfter, TidingsError
from tidings.core.metrics import REDIS_DEGRADED

log = logging.getLogger(__name__)


class RateLimited(RetryAfter, TidingsError):
    status_code = 429
    default_message = "too many requests"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimiter(ABC):
    @abstractmethod
    async def take(self, key: str, rate_per_s: float, burst: int) -> float: ...

    async def close(self) -> None:  # noqa: B027 - only the Redis adapter holds anything
        pass

    async def check(self, key: str, rate_per_s: float, burst: int, what: str) -> None:
        wait_s = await self.take(key, rate_per_s, burst)
        if wait_s > 0:
            raise RateLimited(f"rate limit of {what} reached; retry in {wait_s:.1f}s", wait_s)


class MemoryRateLimiter(RateLimiter):
    def __init__(self) -> None:
        self._buckets = MemoryCache(max_entries=100_000)

    async def take(self, key: str, rate_per_s: float, burst: int) -> float:
        now = time.monotonic()
        raw = await self._buckets.get(key)
        tokens, then = (float(x) for x in raw.split(b" ")) if raw else (float(burst), now)
        tokens = min(float(burst), tokens + (now - then) * rate_per_s)
        wait_s = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait_s = (1 - tokens) / rate_per_s
        await self._buckets.set(key, f"{tokens} {now}".encode(), burst / rate_per_s + 1)
        return wait_s


# One round trip, atomic: refill by the time elapsed (Redis's own clock), take a token or
# say how long until one is there.
_BUCKET = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisRateLimiter(RateLimiter):
    def __init__(self, url: str, namespace: str, options: RedisOptions | None = None) -> None:
        self.namespace = namespace
        self._redis = shared_redis(url, options)
        self._script = self._redis.redis.register_script(_BUCKET)
        self._local = MemoryRateLimiter()  # while Redis is down
        self.degraded = False

    async def take(self, key: str, rate_per_s: float, burst: int) -> float:
        try:
            answer = await self._redis.run(
                lambda _: self._script(
                    keys=[f"{self.namespace}:rl:{key}"], args=[rate_per_s, burst]
                )
            )
        except DependencyUnavailable as exc:
            if not self.degraded:  # one line per outage, not one per request
                log.warning("rate limits counted in process until Redis is back: %s", exc)
                self.degraded = True
            REDIS_DEGRADED.labels("rate_limit", "local").inc()
            return await self._local.take(key, rate_per_s, burst)
        if self.degraded:
            log.info("rate limits counted in Redis again")
            self.degraded = False
        return float(answer)

    async def close(self) -> None:
        await self._redis.close()


def open_rate_limiter(
    redis_url: str | None, namespace: str, options: RedisOptions | None = None
) -> RateLimiter:
    return RedisRateLimiter(redis_url, namespace, options) if redis_url else MemoryRateLimiter()
