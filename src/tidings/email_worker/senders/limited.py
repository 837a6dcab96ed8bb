"""An email transport under its outbound rate limit (core.outbound): each send waits its
turn, shared by every email worker; a 429 with Retry-After pauses the transport."""

from __future__ import annotations

from tidings.core.outbound import Outbound
from tidings.email_worker.compose import OutgoingEmail
from tidings.email_worker.senders import EmailSender


class RateLimitedSender(EmailSender):
    def __init__(
        self, sender: EmailSender, outbound: Outbound, key: str, rate_per_s: float | None
    ) -> None:
        self.sender = sender
        self.outbound = outbound
        self.key = key
        self.rate_per_s = rate_per_s

    async def send(self, email: OutgoingEmail, envelope_from: str | None = None) -> str:
        return await self.outbound.send(
            self.key, self.rate_per_s, lambda: self.sender.send(email, envelope_from)
        )

    async def ping(self) -> None:
        await self.sender.ping()

    async def close(self) -> None:
        await self.sender.close()
