"""Every exchange, queue and routing key of Tidings, named once.

docs/architecture.md tabulates them (exchange, queue, routing key, consumer). ``declare`` in each
bus adapter builds exactly this.
"""

from __future__ import annotations

from dataclasses import dataclass

EXCHANGE = "notifications.direct"
# Messages waiting to be retried: one fixed-TTL queue per (work queue, delay tier), each
# dead-lettering back to notifications.direct with the work queue's routing key.
RETRY_EXCHANGE = "notifications.retry"

EMAIL_QUEUE = "email.queue"
PUSH_QUEUE = "push.queue"
FAILED_QUEUE = "failed.queue"
STATUS_QUEUE = "status.queue"

# The priority lane: notifications with priority >= TIDINGS_PRIORITY_LANE_MIN go to their own
# queue, consumed beside the normal one, so they overtake a backlog.
EMAIL_PRIORITY_QUEUE = "email.priority.queue"
PUSH_PRIORITY_QUEUE = "push.priority.queue"

# The bulk lane: a broadcast's notifications (docs/broadcasts.md) go to their own queue,
# consumed beside the others with its own prefetch, so a transactional send is never behind
# a broadcast's backlog.
EMAIL_BULK_QUEUE = "email.bulk.queue"
PUSH_BULK_QUEUE = "push.bulk.queue"

EMAIL_ROUTE = "email"
PUSH_ROUTE = "push"
FAILED_ROUTE = "failed"
EMAIL_PRIORITY_ROUTE = "email.priority"
PUSH_PRIORITY_ROUTE = "push.priority"
STATUS_ROUTE = "status"
EMAIL_BULK_ROUTE = "email.bulk"
PUSH_BULK_ROUTE = "push.bulk"

# Header names the bus adds when it dead-letters a message itself.
REASON_HEADER = "x-tidings-reason"
SOURCE_QUEUE_HEADER = "x-tidings-source-queue"
# A message of several notifications (core.bus.batch_message): their ids and correlation ids,
# in the order of the body's lines.
BATCH_IDS_HEADER = "x-tidings-batch-ids"
BATCH_CORRELATION_HEADER = "x-tidings-batch-correlation-ids"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    routing_key: str
    # Messages refused too often, or dead-lettered on purpose, go to failed.queue.
    dead_letters: bool = True


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(EMAIL_QUEUE, EMAIL_ROUTE),
    QueueSpec(PUSH_QUEUE, PUSH_ROUTE),
    QueueSpec(EMAIL_PRIORITY_QUEUE, EMAIL_PRIORITY_ROUTE),
    QueueSpec(PUSH_PRIORITY_QUEUE, PUSH_PRIORITY_ROUTE),
    QueueSpec(EMAIL_BULK_QUEUE, EMAIL_BULK_ROUTE),
    QueueSpec(PUSH_BULK_QUEUE, PUSH_BULK_ROUTE),
    QueueSpec(STATUS_QUEUE, STATUS_ROUTE),
    QueueSpec(FAILED_QUEUE, FAILED_ROUTE, dead_letters=False),
)

CHANNEL_ROUTES: dict[str, str] = {"email": EMAIL_ROUTE, "push": PUSH_ROUTE}
CHANNEL_QUEUES: dict[str, str] = {"email": EMAIL_QUEUE, "push": PUSH_QUEUE}
PRIORITY_ROUTES: dict[str, str] = {"email": EMAIL_PRIORITY_ROUTE, "push": PUSH_PRIORITY_ROUTE}
PRIORITY_QUEUES: dict[str, str] = {"email": EMAIL_PRIORITY_QUEUE, "push": PUSH_PRIORITY_QUEUE}
BULK_ROUTES: dict[str, str] = {"email": EMAIL_BULK_ROUTE, "push": PUSH_BULK_ROUTE}
BULK_QUEUES: dict[str, str] = {"email": EMAIL_BULK_QUEUE, "push": PUSH_BULK_QUEUE}
# The routes of the workers' queues, whose consumers take batches apart (core.worker).
WORK_ROUTES = frozenset(
    [*CHANNEL_ROUTES.values(), *PRIORITY_ROUTES.values(), *BULK_ROUTES.values()]
)


def route_for(channel: str, priority: int, lane_min: int) -> str:
    """Where a new notification goes: its channel's priority lane or normal queue. Retries
    go back through the normal queue."""
    return PRIORITY_ROUTES[channel] if priority >= lane_min else CHANNEL_ROUTES[channel]


# The delay tiers: powers of two from 1 s to 512 s (8.5 min). A wait is rounded down to a
# tier, so the backoff's jitter survives as a spread across tiers.
RETRY_TIERS_MS: tuple[int, ...] = tuple(1000 * 2**i for i in range(10))
# Routing keys whose messages can be delayed (they have retry queues): the work queues for
# retries and waits, status and failed so that their consumers wait out an outage of the
# gateway's database the same way, without spending deliveries.
DELAYABLE_ROUTES: tuple[str, ...] = (EMAIL_ROUTE, PUSH_ROUTE, STATUS_ROUTE, FAILED_ROUTE)
