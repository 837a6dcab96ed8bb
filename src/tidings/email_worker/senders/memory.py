from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from tidings.core.errors import DeliveryError
from tidings.email_worker.compose import OutgoingEmail
from tidings.email_worker.senders import EmailSender


class MemorySender(EmailSender):
    """Keeps every email; raises the queued errors first, one per send."""

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []
        # The envelope sender each email in ``sent`` was given, in the same order.
        self.envelope_from: list[str | None] = []
        self.failures: list[DeliveryError] = []

    async def send(self, email: OutgoingEmail, envelope_from: str | None = None) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(email)
        self.envelope_from.append(envelope_from)
        return "250 kept in memory"

    def messages(self) -> list[EmailMessage]:
        """The emails in ``sent``, parsed back, for a test to read their headers and parts."""
        return [parse(sent.raw) for sent in self.sent]


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # policy.default makes EmailMessage
    return message
