from __future__ import annotations

from email.message import EmailMessage

from tidings.core.errors import DeliveryError
from tidings.email_worker.senders import EmailSender


class MemorySender(EmailSender):
    """Keeps every message; raises the queued errors first, one per send."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.failures: list[DeliveryError] = []

    async def send(self, message: EmailMessage) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return "250 kept in memory"
