"""Consumes the workers' status events from status.queue and records them."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from tidings.core.bus import BusMessage, DeadLetter, parse
from tidings.core.errors import Conflict, NotFound
from tidings.core.messages import StatusEvent
from tidings.gateway.service import NotificationService

log = logging.getLogger("tidings.gateway.status")


class StatusConsumer:
    def __init__(self, notifications: NotificationService) -> None:
        self.notifications = notifications

    async def __call__(self, message: BusMessage) -> None:
        event = parse(StatusEvent, message)
        if event.suppress and self.notifications.suppressions is not None:
            # A hard bounce at RCPT: that address is never sent to again.
            await self.notifications.suppressions.add(
                event.suppress, event.error or "refused by the receiving server", "bounce"
            )
        try:
            await self.notifications.record_status(
                uuid.UUID(event.notification_id),
                event.channel,
                event.status,
                at=dt.datetime.fromtimestamp(event.at_ms / 1000, dt.UTC),
                error=event.error,
                detail=event.detail,
                attempt=event.attempt,
                round_=event.round,
            )
        except (NotFound, Conflict, ValueError) as exc:
            # Nothing to attach it to: keep it for inspection rather than retrying forever.
            raise DeadLetter(f"status event refused: {exc}") from exc
