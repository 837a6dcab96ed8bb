"""Consumes the workers' status events from status.queue and records them.

An outage on the way (the gateway's database, the users service of a feedback report) is a
wait: the event goes round again through status's retry tiers, as a new message, so it spends
none of the queue's deliveries and is never dead-lettered for it."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from tidings.core.bus import Bus, BusMessage, DeadLetter, parse, wait_out
from tidings.core.errors import Conflict, NotFound
from tidings.core.messages import StatusEvent
from tidings.core.topology import STATUS_ROUTE
from tidings.gateway.feedback import Feedback
from tidings.gateway.suppressions import Suppressions
from tidings.gateway.transitions import StatusTransitions

log = logging.getLogger(__name__)


class StatusConsumer:
    """status.queue's consumer: records each worker's report (and acts on a feedback
    report's suppression and unsubscribe first)."""

    def __init__(
        self,
        transitions: StatusTransitions,
        suppressions: Suppressions,
        feedback: Feedback,
        bus: Bus,
    ) -> None:
        self._transitions = transitions
        self._suppressions = suppressions
        self._feedback = feedback
        self._bus = bus

    async def __call__(self, message: BusMessage) -> None:
        event = parse(StatusEvent, message)
        try:
            await self._record(event)
        except DeadLetter:  # _record's refusals: kept, not retried
            raise
        except Exception as exc:
            await wait_out(self._bus, message, STATUS_ROUTE, exc)

    async def _record(self, event: StatusEvent) -> None:
        try:
            notification_id = uuid.UUID(event.notification_id)
            if event.feedback is not None:
                # From the bounce receiver: gateway.feedback's rule decides what it changes.
                reason = event.error or event.detail or event.feedback
                await self._feedback.apply(notification_id, event.feedback, event.suppress, reason)
            elif event.suppress:
                # A hard bounce at RCPT: that address is never sent to again.
                await self._suppressions.add(
                    event.suppress, event.error or "refused by the receiving server", "bounce"
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
            )
        except (NotFound, Conflict, ValueError) as exc:
            # Nothing to attach it to: keep it for inspection rather than retrying forever.
            raise DeadLetter(f"status event refused: {exc}") from exc
