"""What the email worker does with one message from email.queue."""

from __future__ import annotations

import logging
import time

from tidings.core.bus import Bus, BusMessage, parse
from tidings.core.errors import (
    DeliveryError,
    InvalidInput,
    NotFound,
    PermanentError,
    TransientError,
)
from tidings.core.logs import current_correlation_id
from tidings.core.lookups import TemplateDirectory
from tidings.core.messages import NotificationMessage, StatusEvent
from tidings.core.rendering import render_content
from tidings.core.status import report
from tidings.core.worker import fail
from tidings.email_worker.compose import compose
from tidings.email_worker.senders import EmailSender
from tidings.email_worker.settings import EmailSettings

log = logging.getLogger("tidings.email")


class EmailHandler:
    def __init__(
        self, settings: EmailSettings, bus: Bus, templates: TemplateDirectory, sender: EmailSender
    ) -> None:
        self.bus = bus
        self.templates = templates
        self.sender = sender
        self.from_address = settings.sender
        self.sent = 0

    async def __call__(self, message: BusMessage) -> None:
        n = parse(NotificationMessage, message)
        started = time.perf_counter()
        try:
            try:
                template = await self.templates.get(n.template_code, "email", n.language)
                rendered = render_content("email", template, n.variables)
            except (NotFound, InvalidInput) as exc:
                raise PermanentError(f"template {n.template_code!r}: {exc.message}") from exc
            if not n.recipient.email:
                raise PermanentError("the user has no email address")
            email = compose(
                n, rendered, sender=self.from_address, correlation_id=current_correlation_id()
            )
            reply = await self.sender.send(email)
        except TransientError:
            # Returned to the queue by the bus; retry tiers with backoff replace this.
            raise
        except DeliveryError as exc:
            raise await fail(self.bus, n, "email", exc) from exc
        self.sent += 1
        log.info(
            "notification %s sent",
            n.notification_id,
            extra={
                "notification_id": n.notification_id,
                "request_id": n.request_id,
                "channel": "email",
                "attempt": n.attempt,
                "duration_ms": round((time.perf_counter() - started) * 1e3, 2),
            },
        )
        await report(
            self.bus,
            StatusEvent(
                notification_id=n.notification_id,
                status="delivered",
                channel="email",
                detail=f"accepted by the mail server: {reply}"[:500],
                attempt=n.attempt,
            ),
        )
