"""The email sender port. Adapters: ``smtp.SmtpSender`` (aiosmtplib) and
``memory.MemorySender`` (keeps what it was given; for tests of the handler)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from email.message import EmailMessage


class EmailSender(ABC):
    @abstractmethod
    async def send(self, message: EmailMessage, envelope_from: str | None = None) -> str:
        """Hand ``message`` over; returns the receiving server's reply.

        ``envelope_from`` is the SMTP MAIL FROM (the VERP bounce address), where bounces go;
        None: the message's From.

        Raises a ``tidings.core.errors.DeliveryError`` subclass, classified.
        """

    async def ping(self) -> None:  # noqa: B027 - nothing to check by default
        pass

    async def close(self) -> None:  # noqa: B027 - nothing to release by default
        pass
