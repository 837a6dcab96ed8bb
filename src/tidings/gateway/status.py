"""Consumes the workers' status events from status.queue and records them."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from pydantic import ValidationError

from tidings.core.bus import BusMessage, DeadLetter
from tidings.core.errors import Conflict, NotFound
from tidings.core.messages import StatusEvent
from tidings.gateway.service import NotificationService

log = logging.getLogger("tidings.gateway.status")


class StatusConsumer:
    def __init__(self, notifications: NotificationService) -> None:
        self.notifications = notifications

    async def __call__(self, message: BusMessage) -> None:
        try:
            event = StatusEvent.model_validate_json(message.body)
        except ValidationError as exc:
            raise DeadLetter(f"malformed status event: {exc.errors()[0]['msg']}") from exc
        try:
            await self.notifications.record_status(
                uuid.UUID(event.notification_id),
                event.channel,
                event.status,
                at=dt.datetime.fromtimestamp(event.at_ms / 1000, dt.UTC),
                error=event.error,
                detail=event.detail,
                attempt=event.attempt,
            )
        except (NotFound, Conflict, ValueError) as exc:
            # Nothing to attach it to: keep it for inspection rather than retrying forever.
            raise DeadLetter(f"status event refused: {exc}") from exc
