"""A notification's status: the one type, the one transition table, and how a worker tells
the gateway what happened (a status event on status.queue; the events of one worker that
come about together travel as one message, a batch).

Every module that sets, compares or lists statuses takes them from here: the gateway's
acceptance, status recording, reconciler, dead-letter replay, relay and dashboard, the
workers' reports and the API schemas (whose OpenAPI enum is this one).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from tidings.core import jsons
from tidings.core.batching import Batcher
from tidings.core.logs import correlation_id
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


# A batch on status.queue: {"events": [event, ...]}, each event a StatusEvent's JSON object.
BATCH_KEY = "events"


def batch_body(events: list[StatusEvent]) -> bytes:
    return jsons.dumps({BATCH_KEY: [e.model_dump(mode="json") for e in events]})


def batch_parts(body: bytes) -> list[bytes] | None:
    """Each event's JSON of a batch, in order, for the consumer to read one by one (one that
    does not fit is refused alone); None when ``body`` is not a batch (a single event, as
    workers before batches publish, or anything else: the single-event parser judges it)."""
    try:
        value: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or set(value) != {BATCH_KEY}:
        return None
    events = value[BATCH_KEY]
    if not isinstance(events, list) or not events:
        return None
    return [jsons.dumps(e) for e in events]


class StatusReporter:
    """How a worker reports: the events produced while a publish is being confirmed go
    together in the next one, as one message (group commit, core.batching: no timer, so an
    event alone goes at once, as a single event). Each caller returns once its event is
    confirmed, and sees the broker's failure if it was not."""

    def __init__(self, bus: Bus, max_batch: int = 100) -> None:
        self._bus = bus
        # Each event with its caller's correlation id (the batch runs in one caller's task).
        self._batches: Batcher[tuple[StatusEvent, str | None], None] = Batcher(
            self._publish, max_batch=max_batch
        )

    async def __call__(self, event: StatusEvent) -> None:
        await self._batches.submit((event, correlation_id.get()))

    async def _publish(self, items: list[tuple[StatusEvent, str | None]]) -> list[None]:
        events = [event for event, _ in items]
        if len(events) == 1:
            # Alone: a single event, under its caller's correlation id, as before batches.
            body, message_id, cid = events[0].dumps(), message_id_of(events[0]), items[0][1]
        else:
            # A batch has many correlation ids: it travels with none (the events name their
            # notifications, whose request ids the gateway's log lines carry).
            body = batch_body(events)
            message_id = f"{message_id_of(events[0])}+{len(events) - 1}"
            cid = None
        token = correlation_id.set(cid)
        try:
            await self._bus.publish(STATUS_ROUTE, body, message_id=message_id)
        finally:
            correlation_id.reset(token)
        return [None] * len(events)
