"""A real SMTP server (aiosmtpd) for the tests, in the test's event loop: it records every
message it accepts, lets a test await each arrival, and can misbehave on purpose: refuse the
first attempts of each message (451), hold messages after taking them (a lost reply), go
down and come back on the same port, or, at random (seeded), answer 451, drop the connection
after taking a message, or stall its reply. It offers PIPELINING (RFC 2920; aiosmtpd reads
pipelined commands in order but does not say so itself) unless ``pipelining`` is False."""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes = b""


@dataclass
class SmtpPeer:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    arrivals: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    server: asyncio.Server | None = None
    # Answer "451" to the first ``refuse_first`` attempts of each Message-ID.
    refuse_first: int = 0
    tries: Counter[str] = field(default_factory=Counter)
    # Past ``hold_after`` messages, while ``gate`` is closed, a message is recorded as
    # received but its reply waits for the gate: the sender cannot know it was taken.
    gate: asyncio.Event | None = None
    hold_after: int = 0
    held: int = 0
    sessions: set[SMTP] = field(default_factory=set)
    # Recipients answered 550 at RCPT, and every RCPT the server was asked for.
    refuse_rcpt: set[str] = field(default_factory=set)
    rcpt_asked: Counter[str] = field(default_factory=Counter)
    # At random, per DATA (all 0 by default): answer 451; take the message, then drop the
    # connection before the reply (the sender cannot know it was taken: the one duplicate
    # it may cause); take it and stall the reply ``stall_s``. Each counted.
    temp_fail_rate: float = 0.0
    drop_rate: float = 0.0
    stall_rate: float = 0.0
    stall_s: float = 2.0
    rng: random.Random = field(default_factory=lambda: random.Random(20261201))
    temp_failed: int = 0
    dropped_after_data: int = 0
    stalled: int = 0
    pipelining: bool = True

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does when there is no hook
        return [responses[0], "250-PIPELINING", *responses[1:]] if self.pipelining else responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.rcpt_asked[address] += 1
        if address in self.refuse_rcpt:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        key = str(msg["Message-ID"])
        self.tries[key] += 1
        if self.tries[key] <= self.refuse_first:
            return "451 4.7.1 Try again later"
        dice = self.rng.random()
        if dice < self.temp_fail_rate:
            self.temp_failed += 1
            return "451 4.3.0 Temporary failure, try again"
        item = Received(str(envelope.mail_from), list(envelope.rcpt_tos), msg, raw)  # type: ignore[arg-type]
        self.received.append(item)
        self.arrivals.put_nowait(item)
        dice -= self.temp_fail_rate
        if dice < self.drop_rate and server.transport is not None:
            self.dropped_after_data += 1
            server.transport.abort()
            return "421 4.4.2 Connection dropped"  # never reaches the sender
        if dice - self.drop_rate < self.stall_rate:
            self.stalled += 1
            await asyncio.sleep(self.stall_s)  # the fault itself: a slow reply
        if (
            self.gate is not None
            and not self.gate.is_set()
            and len(self.received) > self.hold_after
        ):
            self.held += 1
            await self.gate.wait()
        return "250 OK queued"

    async def next(self, timeout_s: float = 30.0) -> Received:
        return await asyncio.wait_for(self.arrivals.get(), timeout_s)

    def _protocol(self) -> SMTP:
        proto = SMTP(self, hostname="test-peer")
        self.sessions.add(proto)
        return proto

    async def start(self) -> SmtpPeer:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._protocol, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Down: stop listening and cut every open connection."""
        if self.server is not None:
            self.server.close()
            for proto in self.sessions:
                if proto.transport is not None:
                    proto.transport.abort()
            self.sessions.clear()
            await self.server.wait_closed()
            self.server = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def count_by(self, header: str) -> Counter[str]:
        return Counter(str(r.message[header]) for r in self.received)
