"""The bounce receiver: an SMTP listener (aiosmtpd) in the email worker's process for the
VERP addresses every email is sent from (``bounces+<notification id>@<domain>``).

A DSN or an ARF complaint arriving there is attributed to its notification (by the address
it came to; else by the original message's ``X-Tidings-Notification-ID`` or ``Message-ID``)
and reported to the gateway as a status event with ``feedback`` set. The SMTP reply waits
for the broker's confirm: 250 means the report is on the bus; 451 makes the reporting MTA
try again later. Anything else is accepted and logged, never a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from aiosmtpd.smtp import SMTP, Envelope, Session

from tidings.core.auth import read_mailto_unsubscribe_tag
from tidings.core.bus import Bus, open_bus
from tidings.core.errors import DependencyUnavailable
from tidings.core.messages import StatusEvent
from tidings.core.status import Status, report
from tidings.email_worker.bounce_parse import Kind, Report, parse_report, read_message
from tidings.email_worker.compose import verp_notification_id
from tidings.email_worker.settings import EmailSettings

log = logging.getLogger(__name__)

# Reports are small; a full original message attached rarely passes a few hundred KiB.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024

Publish = Callable[[StatusEvent], Awaitable[None]]

# A soft bounce is `pending` (the receiving side keeps trying), like the provider webhook's
# "deferred": it never moves a final status, so a hard bounce that came first stays. A
# complaint means the mail arrived.
STATUS_OF: dict[Kind, Status] = {
    "bounce": Status.FAILED,
    "soft_bounce": Status.PENDING,
    "complaint": Status.DELIVERED,
}


def status_event(found: Report, notification_id: str) -> StatusEvent:
    """What the gateway is told. A hard bounce fails the notification; a soft bounce and a
    complaint leave its status as it is and are kept in its history."""
    about = found.recipient or "the recipient"
    words = f"{found.code} {found.diagnostic}".strip()
    status = STATUS_OF[found.kind]
    error = f"bounced: {words}"[:500] if found.kind == "bounce" else None
    if found.kind == "bounce":
        detail = f"bounce report about {about}"
    elif found.kind == "soft_bounce":
        detail = f"soft bounce (delayed, the receiving side keeps trying): {words}"
    else:
        detail = f"complaint ({found.code}) from {about}: address suppressed, email off"
    return StatusEvent(
        notification_id=notification_id,
        status=status,
        channel="email",
        error=error,
        detail=detail[:500],
        suppress=found.recipient if found.suppress else None,
        feedback=found.kind,
    )


class BounceHandler:
    """aiosmtpd handler: RCPT only for bounce addresses, DATA read and reported."""

    def __init__(self, local_part: str, publish: Publish, secret_key: str = "") -> None:
        self.local_part = local_part.lower()
        self.publish = publish
        self.secret_key = secret_key

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        # Only <local_part>@ and <local_part>+tag@ (any domain: the receiver may serve a
        # bounce domain of its own); refusing the rest keeps it from being anyone's inbox.
        local = address.rpartition("@")[0].partition("+")[0]
        if local.lower() != self.local_part:
            return "550 5.1.1 Not a bounce address"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            event = self.event_for(raw, list(envelope.rcpt_tos))
        except Exception:  # a reporter's malformed message must not cost us the listener
            log.exception("unreadable message at the bounce receiver: accepted and dropped")
            return "250 OK"
        if event is None:
            return "250 OK"
        try:
            await self.publish(event)
        except DependencyUnavailable as exc:
            log.warning("bounce report not published, the sender will retry: %s", exc.message)
            return "451 4.3.0 Temporarily unable to take the report, try again later"
        log.info(
            "%s for notification %s recorded",
            event.feedback,
            event.notification_id,
            extra={"notification_id": event.notification_id, "channel": "email"},
        )
        return "250 OK"

    def unsubscribe_for(self, rcpt_tos: list[str]) -> StatusEvent | None:
        """A mail to the signed ``mailto:`` of List-Unsubscribe: the email preference goes."""
        for address in rcpt_tos:
            tag = address.rpartition("@")[0].partition("+")[2]
            nid = read_mailto_unsubscribe_tag(self.secret_key, tag) if self.secret_key else None
            if nid is not None:
                return StatusEvent(
                    notification_id=nid,
                    status=Status.DELIVERED,
                    channel="email",
                    detail="unsubscribed by mail (List-Unsubscribe mailto)",
                    feedback="unsubscribe",
                )
        return None

    def event_for(self, raw: bytes, rcpt_tos: list[str]) -> StatusEvent | None:
        unsubscribe = self.unsubscribe_for(rcpt_tos)
        if unsubscribe is not None:
            return unsubscribe
        message = read_message(raw)
        found = parse_report(message)
        if found is None:
            log.info(
                "message at the bounce receiver is neither a DSN nor a complaint; ignored",
                extra={"content_type": message.get_content_type()},
            )
            return None
        by_address = (verp_notification_id(r, self.local_part) for r in rcpt_tos)
        notification_id = next((n for n in by_address if n), None) or found.original_id
        if notification_id is None:
            log.warning(
                "%s about %s names no notification of ours; ignored", found.kind, found.recipient
            )
            return None
        return status_event(found, notification_id)


async def start_receiver(host: str, port: int, handler: BounceHandler) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(handler, hostname="tidings-bounces", data_size_limit=MAX_MESSAGE_BYTES),
        host,
        port,
    )


async def open_bounce_receiver(
    stack: AsyncExitStack, settings: EmailSettings, bus: Bus | None
) -> asyncio.Server:
    """Start the receiver on TIDINGS_BOUNCE_HOST:TIDINGS_BOUNCE_PORT; ``stack`` stops it.

    The worker's consumer keeps its bus to itself, so without a shared one (``bus``, the
    embedded default) the receiver opens a connection of its own to publish reports.
    """
    assert settings.bounce_port is not None
    the_bus = bus
    if the_bus is None:
        the_bus = open_bus(settings)
        await the_bus.start()
        stack.push_async_callback(the_bus.close)
    publishing_to: Bus = the_bus

    async def publish(event: StatusEvent) -> None:
        await report(publishing_to, event)

    server = await start_receiver(
        settings.bounce_host,
        settings.bounce_port,
        BounceHandler(settings.bounce_local_part, publish, settings.secret("secret_key")),
    )
    log.info("bounce receiver listening on %s:%s", settings.bounce_host, settings.bounce_port)

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    stack.push_async_callback(stop)
    return server
