"""RabbitMQ adapter of the bus port, on aio-pika.

Quorum queues (replicated, with a delivery limit that dead-letters poison messages),
persistent messages, publisher confirms on a dedicated channel, a channel per consumer with
its own prefetch, and ``mandatory`` publishes so an unroutable message is an error.
"""

from __future__ import annotations

import logging
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from tidings.core.bus import Bus, BusMessage, Handler, run_handler
from tidings.core.errors import DependencyUnavailable
from tidings.core.logs import correlation_id
from tidings.core.topology import EXCHANGE, FAILED_ROUTE, QUEUES

log = logging.getLogger("tidings.bus.rabbit")

_BROKER_ERRORS = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    ConnectionError,
    OSError,
)


class RabbitBus(Bus):
    def __init__(
        self, url: str, *, delivery_limit: int = 20, publish_timeout_s: float = 10.0
    ) -> None:
        self.url = url
        self.delivery_limit = delivery_limit
        self.publish_timeout_s = publish_timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None

    async def start(self) -> None:
        try:
            self._connection = await aio_pika.connect_robust(self.url)
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await self._declare(channel)
        except _BROKER_ERRORS as exc:
            raise DependencyUnavailable(f"RabbitMQ unreachable: {exc!r}") from exc

    async def _declare(self, channel: AbstractChannel) -> AbstractExchange:
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
        )
        for spec in QUEUES:
            arguments: dict[str, Any] = {"x-queue-type": "quorum"}
            if spec.dead_letters:
                arguments |= {
                    "x-delivery-limit": self.delivery_limit,
                    "x-dead-letter-exchange": EXCHANGE,
                    "x-dead-letter-routing-key": FAILED_ROUTE,
                }
            queue = await channel.declare_queue(spec.name, durable=True, arguments=arguments)
            await queue.bind(exchange, spec.routing_key)
        return exchange

    async def close(self) -> None:
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
    ) -> None:
        if self._exchange is None:
            raise DependencyUnavailable("bus not started")
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id.get(),
            headers=headers or {},
        )
        try:
            await self._exchange.publish(
                message, routing_key, mandatory=True, timeout=self.publish_timeout_s
            )
        except (TimeoutError, *_BROKER_ERRORS) as exc:
            raise DependencyUnavailable(
                f"publish to {routing_key!r} not confirmed: {exc!r}"
            ) from exc

    async def consume(self, queue: str, handler: Handler, *, prefetch: int) -> None:
        if self._connection is None:
            raise DependencyUnavailable("bus not started")
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        amqp_queue = await channel.get_queue(queue, ensure=True)

        async def on_message(incoming: AbstractIncomingMessage) -> None:
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
                await incoming.nack(requeue=True)
                return
            await incoming.ack()

        await amqp_queue.consume(on_message, no_ack=False)

    async def ping(self) -> None:
        if self._connection is None or self._connection.is_closed:
            raise DependencyUnavailable("RabbitMQ connection closed")
