"""RabbitMQ adapter of the bus port, on aio-pika.

Quorum queues (replicated, with a delivery limit that dead-letters poison messages, at least
once), persistent messages, publisher confirms on a dedicated channel, a channel per consumer
with its own prefetch, ``mandatory`` publishes so an unroutable message is an error, and one
fixed-TTL retry queue per (work queue, delay tier).

A cluster is several node URLs (``TIDINGS_AMQP_URL`` separated by commas): the connection goes
to one live node and, when that one is lost, to the next (:class:`ClusterConnection`); the
robust channels declare the topology again there (idempotent) and restart the consumers. What
was in flight is safe across the switch: a publish whose confirm did not come raises (the
outbox relay sends it again), a delivery not acknowledged on the lost channel comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from yarl import URL

from tidings.core.bus import Bus, BusMessage, Handler, run_handler
from tidings.core.bus.acks import Acks
from tidings.core.errors import DependencyUnavailable
from tidings.core.logs import correlation_id
from tidings.core.metrics import CONSUMED, PUBLISHED, child
from tidings.core.retry import retry_queue, tier_for
from tidings.core.topology import (
    DELAYABLE_ROUTES,
    EXCHANGE,
    FAILED_ROUTE,
    QUEUES,
    RETRY_EXCHANGE,
    RETRY_TIERS_MS,
)

log = logging.getLogger(__name__)

_BROKER_ERRORS = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,  # a RuntimeError: the channel is closed
    aio_pika.exceptions.AMQPException,
    ConnectionError,
    OSError,
)


def _dead_letter_to(routing_key: str) -> dict[str, Any]:
    """Dead-letter to ``notifications.direct`` under ``routing_key``, at least once (the
    quorum queue keeps a message until the target queue has confirmed it)."""
    return {
        "x-dead-letter-exchange": EXCHANGE,
        "x-dead-letter-routing-key": routing_key,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def amqp_addresses(url: str) -> list[str]:
    """The node URLs of ``TIDINGS_AMQP_URL``: one, or several separated by commas (a comma in
    a password is written ``%2C``)."""
    return [part.strip() for part in url.split(",") if part.strip()]


# How soon a lost connection tries the next node (aio-pika's default is 5 s).
RECONNECT_INTERVAL_S = 1.0
# The queue argument that sets a quorum queue's replicas when it is created.
_GROUP_SIZE = "x-quorum-initial-group-size"


class ClusterConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection over several nodes: each connection lost, and each
    attempt that failed, moves to the next address in turn, so a dead node is left for a live
    one. Every address shares the first one's query options."""

    def __init__(self, urls: Sequence[str], **kwargs: Any) -> None:
        self.addresses = [URL(u) for u in urls]
        self._at = 0
        if "reconnect_interval" not in self.addresses[0].query:
            kwargs.setdefault("reconnect_interval", RECONNECT_INTERVAL_S)
        super().__init__(self.addresses[0], **kwargs)

    @property
    def node(self) -> str:
        """The address in use (or tried next), ``host:port``."""
        return f"{self.url.host}:{self.url.port}"

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if len(self.addresses) > 1 and not self._close_called:
            self._at = (self._at + 1) % len(self.addresses)
            self.url = self.addresses[self._at]
        await super()._on_connection_close(closing)


async def connect_cluster(urls: Sequence[str], timeout_s: float) -> ClusterConnection:
    """A connection to the first live node of ``urls``, starting at a random one so that the
    replicas of a service spread over the nodes; DependencyUnavailable if none answers."""
    start = random.randrange(len(urls))
    order = [*urls[start:], *urls[:start]]
    failures: list[str] = []
    for i in range(len(order)):
        connection = ClusterConnection([*order[i:], *order[:i]])
        try:
            await connection.connect(timeout=timeout_s)
        except (TimeoutError, *_BROKER_ERRORS) as exc:
            failures.append(f"{URL(order[i]).host}:{URL(order[i]).port}: {exc!r}")
            with contextlib.suppress(Exception):
                await connection.close()
            continue
        return connection
    raise DependencyUnavailable(f"RabbitMQ unreachable: {'; '.join(failures)}")


class _Sizer:
    """Creates each quorum queue with ``quorum_size`` replicas, on a channel of its own, and
    says with which arguments the robust channel is to declare it. A queue made before the
    size was set (by an older Tidings) refuses the size as inequivalent: it is declared as it
    is, and keeps its members (``rabbitmq-queues grow`` adds replicas: docs/clusters.md)."""

    def __init__(self, bus: RabbitBus) -> None:
        self.bus = bus
        self.channel: AbstractChannel | None = None

    async def __call__(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        assert self.bus._connection is not None
        sized = arguments | {_GROUP_SIZE: self.bus.quorum_size}
        if self.channel is None or self.channel.is_closed:
            # A plain channel: a robust one would reopen itself after the refusal.
            self.channel = aio_pika.Channel(self.bus._connection, publisher_confirms=False)
            await self.channel
        try:
            await self.channel.declare_queue(name, durable=True, arguments=sized)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            if _GROUP_SIZE not in str(exc):
                raise
            log.warning("%s exists without a replica count; it keeps its members", name)
            self.channel = None
            return arguments
        return sized

    async def close(self) -> None:
        if self.channel is not None and not self.channel.is_closed:
            with contextlib.suppress(*_BROKER_ERRORS):
                await self.channel.close()


class RabbitBus(Bus):
    def __init__(
        self,
        url: str,
        *,
        delivery_limit: int = 20,
        publish_timeout_s: float = 10.0,
        grace_s: float = 30.0,
        quorum_size: int = 3,
    ) -> None:
        self.url = url
        self.addresses = amqp_addresses(url)
        self.quorum_size = quorum_size
        self.delivery_limit = delivery_limit
        self.publish_timeout_s = publish_timeout_s
        self.grace_s = grace_s
        self._connection: ClusterConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._retry_exchange: AbstractExchange | None = None
        self._publisher: AbstractChannel | None = None
        self._renewing = asyncio.Lock()
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._acks: list[Acks] = []

    @property
    def node(self) -> str | None:
        """The node connected to (``host:port``), None before ``start``."""
        return self._connection.node if self._connection is not None else None

    async def start(self) -> None:
        self._connection = await connect_cluster(self.addresses, self.publish_timeout_s)
        try:
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            await self._declare(channel)
            await self._new_publisher()
        except _BROKER_ERRORS as exc:
            raise DependencyUnavailable(f"RabbitMQ unreachable: {exc!r}") from exc

    async def _new_publisher(self) -> None:
        """Publish on a channel of its own (the declaring one stays, to declare the topology
        again on a reconnect), made anew after a refusal: on RabbitMQ 3.10 a channel whose
        quorum queue changed leader was seen refusing (nacking) every publish for minutes
        while a fresh channel's were confirmed."""
        assert self._connection is not None
        old = self._publisher
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await channel.get_exchange(EXCHANGE, ensure=False)
        self._retry_exchange = await channel.get_exchange(RETRY_EXCHANGE, ensure=False)
        self._publisher = channel
        if old is not None:
            with contextlib.suppress(*_BROKER_ERRORS):
                await old.close()

    async def _refused(self, channel: AbstractChannel | None) -> None:
        """A publish on ``channel`` was nacked, or found it closed: the next ones go on a new
        channel (once, for all the publishes that channel refused)."""
        async with self._renewing:
            if channel is self._publisher and self._connection is not None:
                # RuntimeError: the connection is itself reconnecting ("closed"); the next
                # refusal tries again.
                with contextlib.suppress(*_BROKER_ERRORS, TimeoutError, RuntimeError):
                    await self._new_publisher()

    async def _declare(self, channel: AbstractChannel) -> None:
        direct = aio_pika.ExchangeType.DIRECT
        self._exchange = await channel.declare_exchange(EXCHANGE, direct, durable=True)
        self._retry_exchange = await channel.declare_exchange(RETRY_EXCHANGE, direct, durable=True)
        sized = _Sizer(self)
        for spec in QUEUES:
            arguments: dict[str, Any] = {"x-queue-type": "quorum"}
            if spec.dead_letters:
                arguments |= _dead_letter_to(FAILED_ROUTE) | {
                    "x-delivery-limit": self.delivery_limit
                }
            arguments = await sized(spec.name, arguments)
            queue = await channel.declare_queue(spec.name, durable=True, arguments=arguments)
            await queue.bind(self._exchange, spec.routing_key)
        for route in DELAYABLE_ROUTES:
            for tier_ms in RETRY_TIERS_MS:
                name = retry_queue(route, tier_ms)
                arguments = {"x-queue-type": "quorum", "x-message-ttl": tier_ms}
                arguments = await sized(name, arguments | _dead_letter_to(route))
                queue = await channel.declare_queue(name, durable=True, arguments=arguments)
                await queue.bind(self._retry_exchange, name)
        await sized.close()

    async def close(self) -> None:
        """Stop consuming, let the handlers in flight finish (up to ``grace_s``), disconnect.

        Whatever is still unacknowledged when the connection closes goes back to its queue.
        """
        for queue, tag in self._consumers:
            with contextlib.suppress(*_BROKER_ERRORS, asyncio.TimeoutError):
                await queue.cancel(tag, timeout=5)
        self._consumers.clear()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.grace_s)
        for acks in self._acks:  # what was handled is acknowledged before the connection goes
            await acks.flush()
        self._acks.clear()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: dict[str, Any] | None = None,
        delay_s: float = 0,
    ) -> None:
        exchange = self._retry_exchange if delay_s > 0 else self._exchange
        if exchange is None:
            raise DependencyUnavailable("bus not started")
        label = f"{routing_key}.retry" if delay_s > 0 else routing_key
        if delay_s > 0:
            routing_key = retry_queue(routing_key, tier_for(delay_s))
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id.get(),
            headers=headers or {},
        )
        channel = self._publisher
        try:
            await exchange.publish(
                message, routing_key, mandatory=True, timeout=self.publish_timeout_s
            )
        except (TimeoutError, *_BROKER_ERRORS) as exc:
            nacked = isinstance(exc, aiormq.exceptions.DeliveryError) and isinstance(
                exc.frame, aiormq.spec.Basic.Nack
            )
            # A robust channel whose restore failed while its node went away stays closed
            # (CI: every publish after a leader's kill failed on it, the worker's retries
            # in a loop): a closed one is replaced as a refusing one is.
            if nacked or (channel is not None and channel.is_closed):
                await self._refused(channel)
            raise DependencyUnavailable(
                f"publish to {routing_key!r} not confirmed: {exc!r}"
            ) from exc
        child(PUBLISHED, label).inc()

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> None:
        if self._connection is None:
            raise DependencyUnavailable("bus not started")
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        amqp_queue = await channel.get_queue(queue, ensure=True)
        acks = Acks(_BROKER_ERRORS)
        self._acks.append(acks)

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            acks.received(incoming)
            headers = dict(incoming.headers or {})
            message = BusMessage(
                body=incoming.body,
                routing_key=incoming.routing_key or "",
                message_id=incoming.message_id or "",
                correlation_id=incoming.correlation_id,
                headers=headers,
                delivery_count=int(str(headers.get("x-delivery-count", 0) or 0)),
            )
            try:
                dead = await run_handler(handler, message)
                if dead is not None:
                    await self.dead_letter(message, queue, dead.reason, dead.headers)
            except Exception:
                log.exception("handler failed on %s; returning it to %s", message.message_id, queue)
                child(CONSUMED, queue, "requeued").inc()
                await acks.requeue(incoming)
                return
            child(CONSUMED, queue, "acked" if dead is None else "dead_lettered").inc()
            # If the channel died meanwhile the broker redelivers: at least once, as promised.
            acks.done(incoming)

        tag = await amqp_queue.consume(on_message, no_ack=False)
        self._consumers.append((amqp_queue, tag))

    async def depths(self) -> dict[str, tuple[int, int]]:
        """Passive declares on a channel of their own: read, never create."""
        if self._connection is None:
            return {}
        found: dict[str, tuple[int, int]] = {}
        try:
            channel = await self._connection.channel()
            try:
                for spec in QUEUES:
                    queue = await channel.declare_queue(spec.name, passive=True)
                    result = queue.declaration_result
                    found[spec.name] = (result.message_count or 0, result.consumer_count or 0)
            finally:
                await channel.close()
        except (*_BROKER_ERRORS, TimeoutError) as exc:
            log.warning("queue depths not read: %s", exc)
        return found

    async def ping(self) -> None:
        if self._connection is None or self._connection.is_closed:
            raise DependencyUnavailable("RabbitMQ connection closed")
