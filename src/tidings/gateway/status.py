"""Consumes the workers' status events from status.queue and records them.

A message is one event or a batch of them (core.status.StatusReporter); a batch's events are
recorded together (one transaction, core.batching) and the message acknowledged once. An
event that does not fit, or has nothing to attach to, is dead-lettered alone, with its
reason; the others are recorded. An outage on the way (the gateway's database, the users
service of a feedback report) is a wait: the events it stopped go round again through
status's retry tiers, as a new message, so they spend none of the queue's deliveries and are
never dead-lettered for it."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import replace

from tidings.core.bus import Bus, BusMessage, DeadLetter, as_outage, parse, wait_out
from tidings.core.errors import Conflict, NotFound
from tidings.core.messages import StatusEvent
from tidings.core.status import batch_body, batch_parts, message_id_of
from tidings.core.topology import STATUS_QUEUE, STATUS_ROUTE
from tidings.gateway.feedback import Feedback
from tidings.gateway.transitions import StatusTransitions

log = logging.getLogger(__name__)


class StatusConsumer:
    """status.queue's consumer: records each worker's report (and acts on a feedback
    report's suppression and unsubscribe first)."""

    def __init__(
        self,
        transitions: StatusTransitions,
        feedback: Feedback,
        bus: Bus,
    ) -> None:
        self._transitions = transitions
        self._feedback = feedback
        self._bus = bus

    async def __call__(self, message: BusMessage) -> None:
        parts = batch_parts(message.body)
        if parts is not None:
            await self._record_batch(message, parts)
            return
        event = parse(StatusEvent, message)
        try:
            await self._record(event)
        except DeadLetter:  # _record's refusals: kept, not retried
            raise
        except Exception as exc:
            await wait_out(self._bus, message, STATUS_ROUTE, exc)

    async def _record_batch(self, message: BusMessage, parts: list[bytes]) -> None:
        """Every event of a batch at once (their records share a transaction); the refused
        ones dead-lettered one by one, the ones an outage stopped sent round together."""
        refused: list[tuple[BusMessage, str]] = []
        events: list[tuple[BusMessage, StatusEvent]] = []
        for i, body in enumerate(parts):
            one = replace(message, body=body, message_id=f"{message.message_id}#{i}")
            try:
                event = parse(StatusEvent, one)
            except DeadLetter as dead:
                refused.append((one, dead.reason))
                continue
            events.append((replace(one, message_id=message_id_of(event)), event))
        results = await asyncio.gather(
            *(self._record(event) for _, event in events), return_exceptions=True
        )
        stopped: list[StatusEvent] = []
        outage: Exception | None = None
        for (one, event), result in zip(events, results, strict=True):
            if isinstance(result, DeadLetter):
                refused.append((one, result.reason))
            elif isinstance(result, BaseException):
                if not isinstance(result, Exception) or as_outage(result) is None:
                    raise result  # a bug: the bus requeues the batch; its delivery limit applies
                stopped.append(event)
                outage = result
        for one, reason in refused:
            log.warning("dead-lettering %s: %s", one.message_id, reason)
            await self._bus.dead_letter(one, STATUS_QUEUE, reason)
        if outage is not None:
            # Only what was not recorded goes round (all of it when the database is down).
            whole = len(stopped) == len(parts)
            again = message if whole else replace(message, body=batch_body(stopped))
            await wait_out(self._bus, again, STATUS_ROUTE, outage)

    async def _record(self, event: StatusEvent) -> None:
        try:
            notification_id = uuid.UUID(event.notification_id)
            if event.feedback is not None:
                # From the bounce receiver: gateway.feedback's rule decides what it changes.
                reason = event.error or event.detail or event.feedback
                await self._feedback.apply(notification_id, event.feedback, event.suppress, reason)
            elif event.suppress:
                # A hard bounce at RCPT: the worker's own SMTP dialogue named the address.
                await self._feedback.refused_at_rcpt(
                    event.suppress, event.error or "refused by the receiving server"
                )
            await self._transitions.record_status(
                notification_id,
                event.channel,
                event.status,
                at=dt.datetime.fromtimestamp(event.at_ms / 1000, dt.UTC),
                error=event.error,
                detail=event.detail,
                # A report from after delivery knows no attempt or round: the current ones.
                attempt=None if event.feedback else event.attempt,
                round_=None if event.feedback else event.round,
                bounced=event.feedback == "bounce",
                removed=tuple((d.device_id, d.reason) for d in event.removed_devices),
            )
        except (NotFound, Conflict, ValueError) as exc:
            # Nothing to attach it to: keep it for inspection rather than retrying forever.
            raise DeadLetter(f"status event refused: {exc}") from exc
