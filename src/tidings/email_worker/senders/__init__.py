"""The email sender port. Adapters: ``smtp.SmtpSender`` (aiosmtplib) and
``memory.MemorySender`` (keeps what it was given; for tests of the handler)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from tidings.email_worker.compose import OutgoingEmail


class EmailSender(ABC):
    @abstractmethod
    async def send(self, email: OutgoingEmail, envelope_from: str | None = None) -> str:
        """Hand ``email`` over (its bytes as they are); returns the receiving server's reply.

        ``envelope_from`` is the SMTP MAIL FROM (the VERP bounce address), where bounces go;
        None: the From address (``email.sender``).

        Raises a ``tidings.core.errors.DeliveryError`` subclass, classified.
        """

    async def ping(self) -> None:  # noqa: B027 - nothing to check by default
        pass

    async def close(self) -> None:  # noqa: B027 - nothing to release by default
        pass
