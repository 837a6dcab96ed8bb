"""In-process adapter of the bus port, for the embedded default and for tests.

It keeps the RabbitMQ adapter's rules: the same queues and routing keys, unroutable publishes
refused, requeue on failure, dead-lettering on :class:`DeadLetter` or past the delivery
limit. Messages live in memory: on the embedded default the gateway's outbox (in SQLite) is
what survives a restart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tidings.core.bus import Bus, BusMessage, Handler, run_handler
from tidings.core.errors import DependencyUnavailable
from tidings.core.logs import correlation_id
from tidings.core.topology import QUEUES

log = logging.getLogger("tidings.bus.memory")


class MemoryBus(Bus):
    def __init__(self, *, delivery_limit: int = 20) -> None:
        self.delivery_limit = delivery_limit
        self.queues: dict[str, asyncio.Queue[BusMessage]] = {}
        self.routes: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        for spec in QUEUES:
            self.queues.setdefault(spec.name, asyncio.Queue())
            self.routes[spec.routing_key] = spec.name
        self._started = True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: dict[str, Any] | None = None,
    ) -> None:
        queue = self.routes.get(routing_key)
        if not self._started or queue is None:
            raise DependencyUnavailable(f"publish to {routing_key!r} not confirmed: no route")
        self.queues[queue].put_nowait(
            BusMessage(
                body=body,
                routing_key=routing_key,
                message_id=message_id,
                correlation_id=correlation_id.get(),
                headers=dict(headers or {}),
            )
        )

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> None:
        if queue not in self.queues:
            raise DependencyUnavailable(f"no queue {queue!r}")
        for _ in range(prefetch):
            self._tasks.append(asyncio.create_task(self._work(queue, handler)))

    async def _work(self, queue: str, handler: Handler) -> None:
        source = self.queues[queue]
        while True:
            message = await source.get()
            try:
                dead = await run_handler(handler, message)
            except Exception as exc:
                message.delivery_count += 1
                if message.delivery_count > self.delivery_limit:
                    dead_reason = f"delivery limit reached: {exc!r}"
                    await self.dead_letter(message, queue, dead_reason)
                else:
                    log.exception(
                        "handler failed on %s; returning it to %s", message.message_id, queue
                    )
                    source.put_nowait(message)
                continue
            finally:
                source.task_done()
            if dead is not None:
                await self.dead_letter(message, queue, dead.reason, dead.headers)

    async def ping(self) -> None:
        if not self._started:
            raise DependencyUnavailable("bus not started")
