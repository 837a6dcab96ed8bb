"""In-process adapter of the bus port, for the embedded default and for tests.

It keeps the RabbitMQ adapter's rules: the same queues and routing keys, unroutable publishes
refused, requeue on failure, dead-lettering on :class:`DeadLetter` or past the delivery
limit, delays rounded to the same tiers. Messages live in memory: on the embedded default the
gateway's outbox (in SQLite) is what survives a restart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tidings.core.bus import Bus, BusMessage, Handler, run_handler
from tidings.core.errors import DependencyUnavailable
from tidings.core.logs import correlation_id
from tidings.core.metrics import CONSUMED, PUBLISHED, child
from tidings.core.retry import tier_for
from tidings.core.topology import DELAYABLE_ROUTES, QUEUES

log = logging.getLogger(__name__)


class MemoryBus(Bus):
    def __init__(self, *, delivery_limit: int = 20, grace_s: float = 30.0) -> None:
        self.delivery_limit = delivery_limit
        self.grace_s = grace_s
        self.queues: dict[str, asyncio.Queue[BusMessage]] = {}
        self.routes: dict[str, str] = {}
        self._idle: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()
        self._delayed: set[asyncio.TimerHandle] = set()
        self._started = False
        self._closing = False

    async def start(self) -> None:
        if self._started:
            return
        for spec in QUEUES:
            self.queues.setdefault(spec.name, asyncio.Queue())
            self.routes[spec.routing_key] = spec.name
        self._started = True

    async def close(self) -> None:
        self._closing = True
        for task in self._idle:
            task.cancel()
        if self._busy:
            await asyncio.wait(self._busy, timeout=self.grace_s)
        for task in self._busy:
            task.cancel()
        await asyncio.gather(*self._idle, *self._busy, return_exceptions=True)
        for handle in self._delayed:
            handle.cancel()
        self._idle.clear()
        self._busy.clear()

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: dict[str, Any] | None = None,
        delay_s: float = 0,
    ) -> None:
        queue = self.routes.get(routing_key)
        if not self._started or queue is None:
            raise DependencyUnavailable(f"publish to {routing_key!r} not confirmed: no route")
        if delay_s > 0 and routing_key not in DELAYABLE_ROUTES:
            raise DependencyUnavailable(f"publish to {routing_key!r} not confirmed: no retry queue")
        message = BusMessage(
            body=body,
            routing_key=routing_key,
            message_id=message_id,
            correlation_id=correlation_id.get(),
            headers=dict(headers or {}),
        )
        child(PUBLISHED, f"{routing_key}.retry" if delay_s > 0 else routing_key).inc()
        if delay_s <= 0:
            self.queues[queue].put_nowait(message)
            return
        # Like a fixed-TTL retry queue: the wait is the tier's, not the exact delay.
        loop = asyncio.get_running_loop()

        def due() -> None:
            self._delayed.discard(handle)
            self.queues[queue].put_nowait(message)

        handle = loop.call_later(tier_for(delay_s) / 1000, due)
        self._delayed.add(handle)

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> None:
        if queue not in self.queues:
            raise DependencyUnavailable(f"no queue {queue!r}")
        for _ in range(prefetch):
            self._idle.add(asyncio.create_task(self._work(queue, handler)))

    async def _work(self, queue: str, handler: Handler) -> None:
        source = self.queues[queue]
        me = asyncio.current_task()
        assert me is not None
        while not self._closing:
            message = await source.get()
            self._idle.discard(me)
            self._busy.add(me)
            try:
                await self._handle(queue, source, handler, message)
            finally:
                source.task_done()
                self._busy.discard(me)
                self._idle.add(me)

    async def _handle(
        self, queue: str, source: asyncio.Queue[BusMessage], handler: Handler, message: BusMessage
    ) -> None:
        try:
            dead = await run_handler(handler, message)
        except asyncio.CancelledError:
            source.put_nowait(message)  # shut down mid-handler: the message stays queued
            raise
        except Exception as exc:
            child(CONSUMED, queue, "requeued").inc()
            message.delivery_count += 1
            if message.delivery_count > self.delivery_limit:
                await self.dead_letter(message, queue, f"delivery limit reached: {exc!r}")
            else:
                log.exception("handler failed on %s; returning it to %s", message.message_id, queue)
                source.put_nowait(message)
            return
        child(CONSUMED, queue, "acked" if dead is None else "dead_lettered").inc()
        if dead is not None:
            await self.dead_letter(message, queue, dead.reason, dead.headers)

    async def depths(self) -> dict[str, tuple[int, int]]:
        return {name: (q.qsize(), 0) for name, q in self.queues.items()}

    async def ping(self) -> None:
        if not self._started:
            raise DependencyUnavailable("bus not started")
