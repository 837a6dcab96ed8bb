"""A notification's status: the one type, the one transition table, and how a worker tells
the gateway what happened (a status event on status.queue).

Every module that sets, compares or lists statuses takes them from here: the gateway's
acceptance, status recording, reconciler, dead-letter replay, relay and dashboard, the
workers' reports and the API schemas (whose OpenAPI enum is this one).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from tidings.core.topology import STATUS_ROUTE

if TYPE_CHECKING:
    from tidings.core.bus import Bus
    from tidings.core.messages import StatusEvent


class Status(StrEnum):
    # Accepted, its message on its way or being retried.
    PENDING = "pending"
    # Accepted with a send_at in the future: its message waits in the outbox until then.
    SCHEDULED = "scheduled"
    # Published to the broker (a history entry the relay writes).
    QUEUED = "queued"
    DELIVERED = "delivered"
    FAILED = "failed"
    # Not sent, and never will be: a preference off, a suppressed address.
    SKIPPED = "skipped"
    # Withdrawn by its client before its message was published.
    CANCELLED = "cancelled"


_ANY = frozenset(Status)

# Where a report may move a notification from each status (every report is kept in the
# history either way). delivered, skipped and cancelled are final; failed can still become
# delivered (a retry or replay that succeeds) or pending (a replay).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: _ANY,
    Status.SCHEDULED: _ANY,
    Status.QUEUED: _ANY,
    Status.FAILED: frozenset({Status.DELIVERED, Status.PENDING}),
    Status.DELIVERED: frozenset(),
    Status.SKIPPED: frozenset(),
    Status.CANCELLED: frozenset(),
}
# And for a bounce only: a mail server that took the message can still report later that it
# could not deliver it.
BOUNCE_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.DELIVERED: frozenset({Status.FAILED}),
}

# What a notification can start as (gateway acceptance).
INITIAL: frozenset[Status] = frozenset({Status.PENDING, Status.SCHEDULED, Status.SKIPPED})
# Settled: nothing more is sent (cancelled is final too, but was never attempted).
TERMINAL: frozenset[Status] = frozenset({Status.DELIVERED, Status.FAILED, Status.SKIPPED})


def may_move(current: str, new: str, bounced: bool = False) -> bool:
    """Whether a report of ``new`` may move a notification that is ``current``."""
    now, then = Status(current), Status(new)
    if bounced and then in BOUNCE_TRANSITIONS.get(now, frozenset()):
        return True
    return then in TRANSITIONS[now]


def rank(status: str) -> int:
    """Of two reports of the same round and attempt, a settled one is the newer."""
    return 1 if status in TERMINAL else 0


def message_id_of(event: StatusEvent) -> str:
    """The broker message id of a status event: the same report published twice is one."""
    return f"{event.notification_id}:{event.status}:{event.attempt}"


async def report(bus: Bus, event: StatusEvent) -> None:
    await bus.publish(STATUS_ROUTE, event.dumps(), message_id=message_id_of(event))
