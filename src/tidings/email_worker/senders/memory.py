from __future__ import annotations

from email.message import EmailMessage

from tidings.core.errors import DeliveryError
from tidings.email_worker.senders import EmailSender


class MemorySender(EmailSender):
    """Keeps every message; raises the queued errors first, one per send."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        # The envelope sender each message in ``sent`` was given, in the same order.
        self.envelope_from: list[str | None] = []
        self.failures: list[DeliveryError] = []

    async def send(self, message: EmailMessage, envelope_from: str | None = None) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        self.envelope_from.append(envelope_from)
        return "250 kept in memory"
