"""Before a bench starts its stack on a broker of the caller's: the queues must be empty. A run
that was stopped (or gave up) leaves its messages in them, and the next run's workers take
them first: messages of templates a fresh database does not have, dead-lettered as
permanent failures, whose CPU the new run counts as its own (seen: 841 of them in a run on a
busy machine). The bench says so and stops instead of measuring that."""

from __future__ import annotations

import contextlib

import aio_pika
import aiormq

from tidings.core.bus.rabbit import amqp_addresses, connect_cluster
from tidings.core.retry import retry_queue
from tidings.core.topology import DELAYABLE_ROUTES, QUEUES, RETRY_TIERS_MS
from tidings.credentials import ConfigurationError

# Every queue a message can wait in: the work queues and the delay tiers' (a retry waiting
# there comes back into a work queue later, in the middle of the next run).
NAMES = [spec.name for spec in QUEUES] + [
    retry_queue(route, tier) for route in DELAYABLE_ROUTES for tier in RETRY_TIERS_MS
]


async def queued_messages(amqp_url: str, timeout_s: float = 5.0) -> dict[str, int]:
    """Messages ready in each of Tidings' queues that exists (passive declares: nothing is
    made); the queues that hold none are left out."""
    connection = await connect_cluster(amqp_addresses(amqp_url), timeout_s)
    found: dict[str, int] = {}
    try:
        for name in NAMES:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                continue  # a fresh vhost: the queue does not exist yet (its channel is closed)
            count = queue.declaration_result.message_count or 0
            if count:
                found[name] = count
            with contextlib.suppress(aio_pika.exceptions.AMQPError, aiormq.exceptions.AMQPError):
                await channel.close()
    finally:
        await connection.close()
    return found


async def require_empty_queues(amqp_url: str) -> None:
    left = await queued_messages(amqp_url)
    if left:
        held = ", ".join(f"{name} {count}" for name, count in sorted(left.items()))
        raise ConfigurationError(
            f"the broker's queues hold messages from an earlier run ({held}): a bench would "
            "count their work as its own; purge them (rabbitmqctl purge_queue NAME) or give "
            "the bench a vhost of its own"
        )
