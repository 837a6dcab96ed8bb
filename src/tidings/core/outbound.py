"""Outbound rate limits per provider, shared by every worker replica (Redis), and the
broadcast marks the workers read (a cancelled broadcast sends nothing more).

Each transport (the SMTP relay, Mailgun, FCM, each Web Push origin) has a rate. A send
*books* its turn: GCRA (the generic cell rate algorithm: one "theoretical arrival time" per
key) in one Lua script on Redis's clock, which answers how long until the booked turn, and
the sender sleeps exactly that long, so the turns of every replica are spaced 1/rate apart
(``TIDINGS_OUTBOUND_BURST`` at once at most) without polling. A turn further away than
``TIDINGS_OUTBOUND_QUEUE_S`` is not booked: the message waits in a delay queue instead
(``Throttled``, a ``BreakerOpen``: core.flow waits it out without spending an attempt). A
broadcast's send (the bulk lane) books only a fiftieth as far ahead and otherwise waits in the
worker for room, so a transactional send is never booked behind more than that of bulk.

A provider's 429 with ``Retry-After`` pushes the key's next turn back by that long, for every
replica (``pause``), and the message that met it waits (no attempt spent).

Written here rather than with core.ratelimit's token bucket: that one answers "go, or retry
in n seconds" for a request that is then refused; a send has to wait its turn instead, and
the turns have to be handed out in order (a bucket polled by every waiting send wakes them
all at once). Redis down: each replica paces its own sends in process meanwhile (logged
once), as the other rate limits do (docs/delivery.md, "Redis down").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from tidings.core.breaker import BreakerOpen
from tidings.core.cache import GuardedRedis, RedisOptions, shared_redis
from tidings.core.errors import DependencyUnavailable, NoRecipient, TransientError
from tidings.core.messages import NotificationMessage
from tidings.core.metrics import REDIS_DEGRADED

log = logging.getLogger(__name__)

T = TypeVar("T")

# The notification metadata key that marks a broadcast's notification (its broadcast's id).
BROADCAST_KEY = "tidings_broadcast_id"
# How long the mark of a cancelled broadcast is kept (longer than any message can wait).
CANCELLED_TTL_S = 7 * 24 * 3600
# The bulk lane books this fraction of TIDINGS_OUTBOUND_QUEUE_S ahead at most.
BULK_SHARE = 0.02

_BOOK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, tolerance, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = math.max(0, tat - tolerance - now)
if wait > horizon then return tostring(-wait) end
local after = tat + interval
redis.call('SET', KEYS[1], tostring(after), 'PX', math.ceil((after - now) * 1000) + 1000)
return tostring(wait)
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local after = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if after > tat then
  redis.call('SET', KEYS[1], tostring(after), 'PX', math.ceil((after - now) * 1000) + 1000)
end
return 1
"""


class Throttled(BreakerOpen):
    """The transport's rate limit: the message's turn is ``retry_after_s`` away, too far to
    wait for in the worker. core.flow waits it out in a delay queue, spending no attempt."""

    def __init__(self, key: str, retry_after_s: float, cause: str | None = None) -> None:
        because = f" ({cause})" if cause else ""  # the provider's answer, e.g. its 429
        DependencyUnavailable.__init__(
            self, f"rate limit of {key}: the next turn is in {retry_after_s:.1f}s{because}"
        )
        self.retry_after_s = retry_after_s


class Withdrawn(NoRecipient):
    """The notification's broadcast was cancelled: nothing is sent, it ends ``skipped``."""


@dataclass(frozen=True)
class Sending:
    """What the transports' wrappers know of the notification being sent."""

    notification_id: str
    broadcast_id: str | None

    @property
    def bulk(self) -> bool:
        return self.broadcast_id is not None


# Set by ``Outbound.delivering`` around one notification's delivery.
current: ContextVar[Sending | None] = ContextVar("outbound_sending", default=None)


def broadcast_of(n: NotificationMessage) -> str | None:
    value = (n.metadata or {}).get(BROADCAST_KEY)
    return value if isinstance(value, str) else None


def _gcra(
    table: dict[str, float],
    key: str,
    interval: float,
    tolerance: float,
    horizon_s: float | None = None,
) -> float:
    """The in-process GCRA (``_BOOK``'s on time.monotonic, ``table`` its arrival times): the
    seconds until the turn booked, or minus them if further than ``horizon_s`` (None: always
    booked)."""
    now = time.monotonic()
    tat = max(table.get(key, now), now)
    wait = max(0.0, tat - tolerance - now)
    if horizon_s is not None and wait > horizon_s:
        return -wait
    table[key] = tat + interval
    return wait


class Outbound:
    """The rate limits of one process's transports (module docstring)."""

    def __init__(
        self,
        redis_url: str | None,
        namespace: str,
        *,
        queue_s: float,
        burst: int,
        options: RedisOptions | None = None,
    ) -> None:
        self.namespace = namespace
        self.queue_s = queue_s
        self.burst = burst
        self._redis: GuardedRedis | None = shared_redis(redis_url, options) if redis_url else None
        self._book = self._redis.redis.register_script(_BOOK) if self._redis else None
        self._pause = self._redis.redis.register_script(_PAUSE) if self._redis else None
        self._local: dict[str, float] = {}  # key -> its next turn (time.monotonic), Redis down
        # key -> when this process's last ``burst`` sends under it started (time.monotonic)
        self._started: dict[str, deque[float]] = {}
        self.degraded = False

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.close()

    def _degrade(self, exc: DependencyUnavailable) -> None:
        REDIS_DEGRADED.labels("outbound", "local").inc()
        if not self.degraded:  # one line per outage
            log.warning("outbound rate limits paced in process until Redis is back: %s", exc)
            self.degraded = True

    async def _redis_call(self, call: Callable[[], Awaitable[T]]) -> T | None:
        if self._redis is None:
            return None
        try:
            answer = await self._redis.run(lambda _: call())
        except DependencyUnavailable as exc:
            self._degrade(exc)
            return None
        if self.degraded:
            log.info("outbound rate limits paced in Redis again")
            self.degraded = False
        return answer

    async def book(self, key: str, rate_per_s: float, horizon_s: float) -> float:
        """Book the next turn of ``key``: the seconds until it (>= 0), or, if it is further
        than ``horizon_s``, minus that many seconds (nothing booked)."""
        interval = 1.0 / rate_per_s
        tolerance = interval * (self.burst - 1)
        script = self._book
        if script is not None:
            answer = await self._redis_call(
                lambda: script(
                    keys=[f"{self.namespace}:outbound:{key}"],
                    args=[interval, tolerance, horizon_s],
                )
            )
            if answer is not None:
                return float(answer)
        return _gcra(self._local, key, interval, tolerance, horizon_s)

    async def pause(self, key: str, seconds: float) -> None:
        """A provider said to wait (429, ``Retry-After``): no turn of ``key`` before then."""
        log.warning("%s asked to wait %.1fs: every worker's sends to it wait", key, seconds)
        script = self._pause
        if script is not None:
            done = await self._redis_call(
                lambda: script(keys=[f"{self.namespace}:outbound:{key}"], args=[seconds])
            )
            if done is not None:
                return
        now = time.monotonic()
        self._local[key] = max(self._local.get(key, now), now + seconds)

    async def turn(self, key: str, rate_per_s: float | None) -> None:
        """Wait for this send's turn under ``key``'s rate (None: unlimited); Throttled if it
        is further away than this process waits."""
        if rate_per_s is None:
            return
        sending = current.get()
        bulk = sending is not None and sending.bulk
        horizon = self.queue_s * (BULK_SHARE if bulk else 1.0)
        deadline = time.monotonic() + self.queue_s
        while True:
            answer = await self.book(key, rate_per_s, horizon)
            if answer >= 0:
                await asyncio.sleep(answer)
                # The turns are spaced when booked; the sends must be when they start. A
                # process that could not run for a while (a busy event loop, a pause of the
                # machine) wakes every send whose turn passed meanwhile at once, and they
                # reached the provider in a bunch (5 turns early at 14/s: refused). Each
                # process spaces the sends it starts as well, by the same rate and burst.
                await self._start_spaced(key, 1.0 / rate_per_s)
                return
            # Bulk: wait in the worker until there is room within its share, up to queue_s.
            room_in = -answer - horizon
            if not bulk or time.monotonic() + room_in > deadline:
                raise Throttled(key, -answer)
            await asyncio.sleep(room_in)

    async def _start_spaced(self, key: str, interval: float) -> None:
        """Until this process has started fewer than ``burst`` sends under ``key`` in the
        last ``burst`` intervals; then this one counts as started. Measured on the starts
        themselves, not on slots worked out in advance: a send woken late (a busy loop again)
        pushes the next one back instead of leaving it a shorter gap. Check and record have
        no await between them, so two sends of the loop never take one place."""
        starts = self._started.setdefault(key, deque(maxlen=max(1, self.burst)))
        window = interval * (starts.maxlen or 1)
        while len(starts) == starts.maxlen:  # the clock is what it waits for, no event
            wait = starts[0] + window - time.monotonic()
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        starts.append(time.monotonic())

    async def send(self, key: str, rate_per_s: float | None, call: Callable[[], Awaitable[T]]) -> T:
        """``call`` (one send to the transport ``key``) in its turn. A 429 with Retry-After
        (a TransientError carrying ``retry_after_s``) pauses the key for every replica and
        makes this message wait without spending an attempt."""
        await self.turn(key, rate_per_s)
        sending = current.get()
        broadcast = sending.broadcast_id if sending is not None else None
        # Cancelled while this send waited for its turn: the cancel holds from here.
        if broadcast is not None and await self.is_cancelled(broadcast):
            raise Withdrawn(f"broadcast {broadcast} was cancelled")
        try:
            return await call()
        except TransientError as exc:
            if exc.retry_after_s is None or exc.connection_level:
                raise
            await self.pause(key, exc.retry_after_s)
            raise Throttled(key, exc.retry_after_s, exc.message) from exc

    def _cancelled_key(self, broadcast_id: str) -> str:
        return f"{self.namespace}:broadcast-cancelled:{broadcast_id}"

    async def mark_cancelled(self, broadcast_id: str) -> None:
        """Said by the gateway when a broadcast is cancelled (Redis down: the workers send
        what is already queued; the gateway has cancelled what it still held)."""
        if self._redis is not None:
            await self._redis_call(
                lambda: self._redis.redis.set(  # type: ignore[union-attr]
                    self._cancelled_key(broadcast_id), b"1", ex=CANCELLED_TTL_S
                )
            )

    async def is_cancelled(self, broadcast_id: str) -> bool:
        if self._redis is None:
            return False
        found = await self._redis_call(
            lambda: self._redis.redis.exists(self._cancelled_key(broadcast_id))  # type: ignore[union-attr]
        )
        return bool(found)

    def delivering(
        self, deliver: Callable[[NotificationMessage], Awaitable[str]]
    ) -> Callable[[NotificationMessage], Awaitable[str]]:
        """``deliver`` (a worker's channel) with what its transports' wrappers need to know
        set for them, and a cancelled broadcast's notification withdrawn before any work."""

        async def delivering(n: NotificationMessage) -> str:
            broadcast = broadcast_of(n)
            if broadcast is not None and await self.is_cancelled(broadcast):
                raise Withdrawn(f"broadcast {broadcast} was cancelled")
            token = current.set(Sending(n.notification_id, broadcast))
            try:
                return await deliver(n)
            finally:
                current.reset(token)

        delivering.__wrapped__ = deliver  # type: ignore[attr-defined]  # inspect.unwrap
        return delivering
