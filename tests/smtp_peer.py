"""A real SMTP server (aiosmtpd) for the tests, in the test's event loop: it records every
message and the RCPT/MAIL envelope, and lets a test await each arrival."""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class SmtpPeer:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    arrivals: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    server: asyncio.Server | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        item = Received(str(envelope.mail_from), list(envelope.rcpt_tos), msg)  # type: ignore[arg-type]
        self.received.append(item)
        self.arrivals.put_nowait(item)
        return "250 OK queued"

    async def next(self, timeout_s: float = 30.0) -> Received:
        return await asyncio.wait_for(self.arrivals.get(), timeout_s)

    async def start(self) -> SmtpPeer:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self, hostname="test-peer"), "127.0.0.1", 0
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"
