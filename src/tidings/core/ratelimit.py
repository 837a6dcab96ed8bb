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
from typing import cast

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


# A bucket: its key, refill rate (tokens per second) and burst.
Bucket = tuple[str, float, int]


def refuse_if(wait_s: float, what: str) -> None:
    """RateLimited for a bucket that said wait (``take``'s answer), else nothing."""
    if wait_s > 0:
        raise RateLimited(f"rate limit of {what} reached; retry in {wait_s:.1f}s", wait_s)


class RateLimiter(ABC):
    @abstractmethod
    async def take(self, key: str, rate_per_s: float, burst: int) -> float: ...

    @abstractmethod
    async def take_chain(self, buckets: list[Bucket]) -> list[float]:
        """A token of each bucket in order, up to the first that has none: the waits of
        those tried (the last one > 0 if it had none; the buckets after it untouched). One
        round trip for all in Redis."""

    @abstractmethod
    async def give_back(self, key: str, rate_per_s: float, burst: int) -> None:
        """Return a token taken (``take_chain``) for something that did not go (at most the
        burst)."""

    async def close(self) -> None:  # noqa: B027 - only the Redis adapter holds anything
        pass

    async def check(self, key: str, rate_per_s: float, burst: int, what: str) -> None:
        refuse_if(await self.take(key, rate_per_s, burst), what)


class MemoryRateLimiter(RateLimiter):
    def __init__(self) -> None:
        self._buckets = MemoryCache(max_entries=100_000)

    async def take(self, key: str, rate_per_s: float, burst: int) -> float:
        return await self._change(key, rate_per_s, burst, -1)

    async def take_chain(self, buckets: list[Bucket]) -> list[float]:
        waits: list[float] = []
        for bucket in buckets:
            waits.append(await self.take(*bucket))
            if waits[-1] > 0:
                break
        return waits

    async def give_back(self, key: str, rate_per_s: float, burst: int) -> None:
        await self._change(key, rate_per_s, burst, +1)

    async def _change(self, key: str, rate_per_s: float, burst: int, delta: int) -> float:
        now = time.monotonic()
        raw = await self._buckets.get(key)
        tokens, then = (float(x) for x in raw.split(b" ")) if raw else (float(burst), now)
        tokens = min(float(burst), tokens + (now - then) * rate_per_s)
        wait_s = 0.0
        if delta > 0:
            tokens = min(float(burst), tokens + delta)
        elif tokens >= 1:
            tokens -= 1
        else:
            wait_s = (1 - tokens) / rate_per_s
        await self._buckets.set(key, f"{tokens} {now}".encode(), burst / rate_per_s + 1)
        return wait_s


# One round trip, atomic, for one bucket or a chain of them (KEYS; ARGV: 'take' or 'give',
# then each bucket's rate and burst): refill each by the time elapsed (Redis's own clock);
# 'take' takes a token of each in turn, up to the first that has none (how long until it
# has one: its wait; the buckets after it untouched); 'give' returns one. The waits of the
# buckets tried.
_BUCKETS = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local waits = {}
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(state[1]) or burst
  local ts = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local wait = 0
  if ARGV[1] == 'give' then tokens = math.min(burst, tokens + 1)
  elseif tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
  redis.call('HSET', key, 't', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  waits[i] = tostring(wait)
  if wait > 0 then break end
end
return waits
"""


class RedisRateLimiter(RateLimiter):
    def __init__(self, url: str, namespace: str, options: RedisOptions | None = None) -> None:
        self.namespace = namespace
        self._redis = shared_redis(url, options)
        self._script = self._redis.redis.register_script(_BUCKETS)
        self._local = MemoryRateLimiter()  # while Redis is down
        self.degraded = False

    async def take(self, key: str, rate_per_s: float, burst: int) -> float:
        [wait_s] = await self.take_chain([(key, rate_per_s, burst)])
        return wait_s

    async def take_chain(self, buckets: list[Bucket]) -> list[float]:
        answer = await self._run("take", buckets)
        if answer is None:
            return await self._local.take_chain(buckets)
        return [float(w) for w in answer]

    async def give_back(self, key: str, rate_per_s: float, burst: int) -> None:
        if await self._run("give", [(key, rate_per_s, burst)]) is None:
            await self._local.give_back(key, rate_per_s, burst)

    async def _run(self, mode: str, buckets: list[Bucket]) -> list[bytes] | None:
        """The script's answer; None while Redis is down (counted in process meanwhile)."""
        keys = [f"{self.namespace}:rl:{key}" for key, _, _ in buckets]
        args: list[str | float] = [mode]
        for _, rate_per_s, burst in buckets:
            args += [rate_per_s, burst]
        try:
            answer = await self._redis.run(lambda _: self._script(keys=keys, args=args))
        except DependencyUnavailable as exc:
            if not self.degraded:  # one line per outage, not one per request
                log.warning("rate limits counted in process until Redis is back: %s", exc)
                self.degraded = True
            REDIS_DEGRADED.labels("rate_limit", "local").inc()
            return None
        if self.degraded:
            log.info("rate limits counted in Redis again")
            self.degraded = False
        return cast(list[bytes], answer)

    async def close(self) -> None:
        await self._redis.close()


def open_rate_limiter(
    redis_url: str | None, namespace: str, options: RedisOptions | None = None
) -> RateLimiter:
    return RedisRateLimiter(redis_url, namespace, options) if redis_url else MemoryRateLimiter()
