"""The message bus port: publish with confirmation, consume with manual acknowledgement.

Adapters: :class:`~tidings.core.bus.rabbit.RabbitBus` (RabbitMQ through aio-pika) and
:class:`~tidings.core.bus.memory.MemoryBus` (in-process, same routing and dead-letter rules).

The contract, which both adapters keep (tests/contract/test_bus.py runs against both):

* ``publish`` returns only once the message is stored by the broker (publisher confirm);
  a routing key with no queue is an error, never a silent drop.
* A handler that returns acknowledges the message.
* A handler that raises :class:`DeadLetter` sends the message to ``failed.queue`` with the
  reason in the ``x-tidings-reason`` header, then acknowledges it.
* A handler that raises anything else returns the message to its queue; after
  ``delivery_limit`` deliveries it is dead-lettered instead. That is the guard against a
  handler bug, not how an outage is handled: a consumer that meets one (``as_outage``) sends
  the message round again later (``later``), which spends no delivery.
* The correlation id travels with the message and is set while its handler runs.
* A delayed publish reaches its queue after its tier's delay, not before.
* ``close`` stops consuming and waits for the handlers in flight before disconnecting.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tidings.core.db import unavailable
from tidings.core.errors import DependencyUnavailable
from tidings.core.logs import correlation_id
from tidings.core.settings import TidingsSettings
from tidings.core.topology import (
    BATCH_CORRELATION_HEADER,
    BATCH_IDS_HEADER,
    FAILED_ROUTE,
    REASON_HEADER,
    SOURCE_QUEUE_HEADER,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


@dataclass
class BusMessage:
    """One message as a handler receives it, whichever adapter carried it: the body, its
    routing key and id, the correlation id and headers, and how many times the broker has
    delivered it again (``delivery_count``)."""

    body: bytes
    routing_key: str
    message_id: str
    correlation_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    delivery_count: int = 0


class DeadLetter(Exception):
    """Raised by a handler: this message goes to failed.queue with ``reason``."""

    def __init__(self, reason: str, headers: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.headers = headers or {}


Handler = Callable[[BusMessage], Awaitable[None]]

# Headers the broker sets on each delivery; a copy published again must not carry them.
_DELIVERY_HEADERS = ("x-delivery-count",)


def as_outage(exc: BaseException) -> DependencyUnavailable | None:
    """``exc`` as a dependency outage (a database, the broker, a socket, a timeout), or None
    when it is something else (a bug, bad data): an outage is waited out, never counted
    against the message. Database errors are classified once, by ``core.db.unavailable``,
    the same function that answers 503 at the HTTP edge."""
    if isinstance(exc, DependencyUnavailable):
        return exc
    reason = unavailable(exc)
    return DependencyUnavailable(reason[:300]) if reason is not None else None


class Bus(ABC):
    """The message bus: publishes with confirmation into ``notifications.direct`` and feeds
    queues to handlers with manual acknowledgement, keeping the contract above. Made by
    :func:`open_bus`; ``start`` before use, ``close`` to stop."""

    @abstractmethod
    async def start(self) -> None:
        """Connect and declare the topology (idempotent)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: dict[str, Any] | None = None,
        delay_s: float = 0,
    ) -> None:
        """Publish to ``notifications.direct``; returns once confirmed.

        With ``delay_s`` > 0 (routing keys in ``DELAYABLE_ROUTES`` only) the message first
        waits in the retry queue of the delay tier ``tier_for(delay_s)``.
        """

    @abstractmethod
    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> None:
        """Start delivering ``queue``'s messages to ``handler``, at most ``prefetch`` at once."""

    @abstractmethod
    async def ping(self) -> None: ...

    async def depths(self) -> dict[str, tuple[int, int]]:
        """Messages ready and consumers, per queue (for metrics); {} if not known."""
        return {}

    async def later(
        self,
        message: BusMessage,
        route: str,
        delay_s: float,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish ``message`` again to ``route`` (one of ``DELAYABLE_ROUTES``) after
        ``delay_s``, as a new message: the consumer then acknowledges the one it holds. How a
        consumer waits out an outage without spending deliveries (a requeue would count one,
        and come back at once)."""
        kept = {k: v for k, v in message.headers.items() if k not in _DELIVERY_HEADERS}
        await self._again(message, route, {**kept, **(headers or {})}, delay_s)

    async def dead_letter(
        self, message: BusMessage, queue: str, reason: str, extra: dict[str, Any] | None = None
    ) -> None:
        """Send ``message`` to failed.queue with the reason and the queue it came from."""
        headers = {
            **message.headers,
            **(extra or {}),
            REASON_HEADER: reason[:1000],
            SOURCE_QUEUE_HEADER: queue,
        }
        await self._again(message, FAILED_ROUTE, headers)

    async def _again(
        self, message: BusMessage, route: str, headers: dict[str, Any], delay_s: float = 0
    ) -> None:
        """Publish a consumed message's body once more, under its id and correlation id."""
        token = correlation_id.set(message.correlation_id)
        try:
            await self.publish(
                route, message.body, message_id=message.message_id, headers=headers, delay_s=delay_s
            )
        finally:
            correlation_id.reset(token)


# How often a message has gone round waiting for an outage to end (it sets the next wait).
WAITS_HEADER = "x-tidings-waits"
# The longest single wait: a message waits as long as the outage lasts, never fails.
WAIT_CAP_S = 32.0


async def wait_out(
    bus: Bus, message: BusMessage, route: str, exc: Exception, **headers: Any
) -> None:
    """For a consumer that met ``exc``: when it is an outage, send ``message`` round again
    through ``route``'s retry tiers, 1 s, 2 s, 4 s ... up to ``WAIT_CAP_S`` (the count in
    its ``WAITS_HEADER``), so the wait spends none of its deliveries; anything else is
    raised again."""
    outage = as_outage(exc)
    if outage is None:
        raise exc
    waits = int(str(message.headers.get(WAITS_HEADER) or 0))
    delay_s = min(WAIT_CAP_S, 2.0**waits)
    log.warning("%s waits %gs: %s", message.message_id, delay_s, outage.message)
    await bus.later(message, route, delay_s, headers={WAITS_HEADER: waits + 1, **headers})


def parse(model: type[M], message: BusMessage) -> M:
    """The message's JSON body as ``model``; a body that does not fit is dead-lettered."""
    try:
        return model.model_validate_json(message.body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise DeadLetter(f"malformed {model.__name__}: {where}: {first['msg']}") from exc


async def run_handler(handler: Handler, message: BusMessage) -> DeadLetter | None:
    """Run ``handler`` under the message's correlation id.

    Returns the DeadLetter the handler raised (the adapter then dead-letters the message),
    None when the message is done, and re-raises anything else (the adapter requeues).
    """
    token = correlation_id.set(message.correlation_id)
    try:
        await handler(message)
        return None
    except DeadLetter as dead:
        log.warning("dead-lettering %s: %s", message.message_id, dead.reason)
        return dead
    finally:
        correlation_id.reset(token)


def batchable(body: bytes) -> bool:
    """Whether ``body`` can go in a batch: a batch is its bodies one a line, and compact JSON
    has no raw newline; a body that has one goes alone."""
    return b"\n" not in body


def batch_message(
    bodies: Sequence[bytes], ids: Sequence[str], correlation_ids: Sequence[str | None]
) -> tuple[bytes, dict[str, Any]]:
    """Several messages for one queue as one (issue #17: one publish, confirm, delivery and
    ack for a group instead of one each): the bodies one a line (each ``batchable``), their
    ids and correlation ids in headers. A consumer wrapped in :func:`unbatched` handles each
    as if it came alone."""
    if not all(batchable(body) for body in bodies):
        raise ValueError("a batched body cannot hold a newline")
    headers = {
        BATCH_IDS_HEADER: list(ids),
        BATCH_CORRELATION_HEADER: [c or "" for c in correlation_ids],
    }
    return b"\n".join(bodies), headers


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def split_batch(message: BusMessage) -> list[BusMessage]:
    """The messages of a batch (``batch_message``), each with its own id and correlation id
    and the batch's other headers and delivery count; DeadLetter if it does not add up."""
    ids = [_text(i) for i in message.headers.get(BATCH_IDS_HEADER) or []]
    correlations = [_text(c) for c in message.headers.get(BATCH_CORRELATION_HEADER) or []]
    bodies = message.body.split(b"\n")
    if not ids or len(bodies) != len(ids) or len(correlations) != len(ids):
        raise DeadLetter(
            f"malformed batch: {len(bodies)} bodies, {len(ids)} ids, "
            f"{len(correlations)} correlation ids"
        )
    kept = {
        k: v
        for k, v in message.headers.items()
        if k not in (BATCH_IDS_HEADER, BATCH_CORRELATION_HEADER)
    }
    return [
        BusMessage(
            body=body,
            routing_key=message.routing_key,
            message_id=i,
            correlation_id=c or None,
            headers=dict(kept),
            delivery_count=message.delivery_count,
        )
        for body, i, c in zip(bodies, ids, correlations, strict=True)
    ]


def unbatched(handler: Handler, bus: Bus, queue: str) -> Handler:
    """``handler`` for ``queue``, which may carry batches: each message of a batch is handled
    on its own, concurrently (the delivery flow groups them as it groups separate messages),
    under its own correlation id; one that is dead-lettered goes to failed.queue alone. The
    batch is acknowledged when all are done; if one raised anything else the whole batch goes
    back to its queue (the others, done already, are found done when it comes again)."""

    async def handle(message: BusMessage) -> None:
        if BATCH_IDS_HEADER not in message.headers:
            await handler(message)
            return
        items = split_batch(message)
        results = await asyncio.gather(
            *(run_handler(handler, item) for item in items), return_exceptions=True
        )
        failure: BaseException | None = None
        for item, result in zip(items, results, strict=True):
            if isinstance(result, DeadLetter):
                await bus.dead_letter(item, queue, result.reason, result.headers)
            elif isinstance(result, BaseException):
                failure = failure or result
        if failure is not None:
            raise failure

    return handle


def open_bus(settings: TidingsSettings) -> Bus:
    """RabbitMQ when a URL is configured, the in-process bus otherwise."""
    if settings.amqp_url:
        from tidings.core.bus.rabbit import RabbitBus

        return RabbitBus(
            settings.amqp_url,
            delivery_limit=settings.delivery_limit,
            grace_s=settings.shutdown_grace_s,
            quorum_size=settings.amqp_quorum_size,
        )
    from tidings.core.bus.memory import MemoryBus

    return MemoryBus(delivery_limit=settings.delivery_limit, grace_s=settings.shutdown_grace_s)
