"""The SMTP sender's mail transaction, pipelined (RFC 2920) when the server offers PIPELINING
and one command at a time when it does not, against a scripted server that checks what it
receives: the pipelining server answers nothing of a transaction until MAIL, RCPT and DATA
have all arrived (a client waiting for MAIL's reply would hang). Every refusal, at each stage,
is classified as it was with aiosmtplib's own transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.smtp_peer import SmtpPeer
from tidings.core.errors import PermanentError, RecipientInvalid, TransientError
from tidings.email_worker.compose import OutgoingEmail
from tidings.email_worker.senders.smtp import SmtpSender

RAW = (
    b"From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: <m1@example.com>\r\n\r\n"
    b"hi\r\n.a line that starts with a dot\r\n"
)
EMAIL = OutgoingEmail(
    raw=RAW, sender="a@example.com", recipients=("b@example.com",), message_id="<m1@example.com>"
)


@dataclass
class ScriptedServer:
    """Answers each stage with ``replies`` (MAIL, RCPT, DATA, END: after the data)."""

    pipelining: bool
    replies: dict[str, bytes] = field(default_factory=dict)
    # Each transaction's commands as they came before the server answered any of them.
    batches: list[list[bytes]] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    def reply(self, stage: str, default: bytes) -> bytes:
        return self.replies.get(stage, default)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        ehlo = b"250-scripted\r\n" + (b"250-PIPELINING\r\n" if self.pipelining else b"")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(ehlo + b"250 SIZE 1000000\r\n")
            elif verb == b"MAIL":
                batch = [line]
                if self.pipelining:  # nothing is answered before DATA has come
                    while not batch[-1].upper().startswith(b"DATA"):
                        batch.append(await reader.readline())
                self.batches.append(batch)
                writer.write(self.reply("MAIL", b"250 sender ok\r\n"))
                for command in batch[1:]:
                    await self._answer(command, reader, writer)
            elif verb in (b"RCPT", b"DATA"):
                await self._answer(line, reader, writer)
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
        writer.close()

    async def _answer(
        self, command: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if command.upper().startswith(b"RCPT"):
            writer.write(self.reply("RCPT", b"250 recipient ok\r\n"))
            return
        start = self.reply("DATA", b"354 go ahead\r\n")
        writer.write(start)
        if start.startswith(b"354"):
            lines = []
            while (line := await reader.readline()) != b".\r\n":
                lines.append(line[1:] if line.startswith(b"..") else line)
            self.messages.append(b"".join(lines))
            writer.write(self.reply("END", b"250-queued\r\n250 as 42\r\n"))

    async def start(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture(params=[True, False], ids=["pipelining", "one-at-a-time"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[ScriptedServer]:
    scripted = await ScriptedServer(pipelining=request.param).start()
    yield scripted
    await scripted.stop()


async def _send(server: ScriptedServer, times: int = 1) -> list[str]:
    sender = SmtpSender(f"smtp://127.0.0.1:{server.port}", pool_size=1, timeout_s=5)
    try:
        return [await sender.send(EMAIL) for _ in range(times)]
    finally:
        await sender.close()


async def test_a_transaction_in_one_write_when_the_server_pipelines(server: ScriptedServer) -> None:
    replies = await _send(server, times=2)
    assert replies == ["queued\nas 42", "queued\nas 42"]
    # The message as composed: the dot-stuffed line arrived as it was.
    assert server.messages == [RAW, RAW]
    size = f"SIZE={len(RAW)}".encode()
    for batch in server.batches:  # one connection, two transactions
        assert batch[0] == b"MAIL FROM:<a@example.com> " + size + b"\r\n"
        if server.pipelining:
            assert batch[1:] == [b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n"]
        else:
            assert batch[1:] == []


@pytest.mark.parametrize(
    ("stage", "reply", "error"),
    [
        ("MAIL", b"451 4.3.0 try later\r\n", TransientError),
        ("MAIL", b"553 5.1.8 bad sender\r\n", RecipientInvalid),
        ("RCPT", b"450 4.2.1 mailbox busy\r\n", TransientError),
        ("RCPT", b"550 5.1.1 no such user\r\n", RecipientInvalid),
        ("DATA", b"451 4.3.0 not now\r\n", TransientError),
        ("DATA", b"554 5.3.0 no\r\n", PermanentError),
        ("END", b"452 4.3.1 out of space\r\n", TransientError),
        ("END", b"552 5.3.4 too big\r\n", PermanentError),
    ],
)
async def test_a_refusal_at_each_stage_is_classified(
    server: ScriptedServer, stage: str, reply: bytes, error: type[Exception]
) -> None:
    if stage in ("MAIL", "RCPT"):  # what a pipelining server answers DATA after that
        server.replies["DATA"] = b"503 5.5.1 no valid recipients\r\n"
    server.replies[stage] = reply
    sender = SmtpSender(f"smtp://127.0.0.1:{server.port}", pool_size=1, timeout_s=5)
    try:
        with pytest.raises(error) as raised:
            await sender.send(EMAIL)
        assert type(raised.value) is error
        assert reply.decode().split()[0] in raised.value.message
        del server.replies[stage]
        server.replies.pop("DATA", None)
        # The refused connection is not reused; the next message goes on a fresh one.
        assert await sender.send(EMAIL) == "queued\nas 42"
    finally:
        await sender.close()
    assert server.messages == [RAW] * (2 if stage == "END" else 1)  # END: refused after it


async def test_data_taken_after_every_recipient_was_refused_is_ended_empty() -> None:
    """RFC 2920: a pipelining server may answer DATA 354 though no RCPT was taken; the client
    then ends the data at once, and the refusal is the recipient's."""
    server = await ScriptedServer(pipelining=True).start()
    server.replies["RCPT"] = b"550 5.1.1 no such user\r\n"
    try:
        with pytest.raises(RecipientInvalid):
            await _send(server)
    finally:
        await server.stop()
    assert server.messages == [b""]


@pytest.fixture
async def aiosmtpd_peer() -> AsyncIterator[SmtpPeer]:
    peer = await SmtpPeer().start()
    yield peer
    await peer.stop()


async def test_the_test_peer_takes_pipelined_transactions(aiosmtpd_peer: SmtpPeer) -> None:
    aiosmtpd_peer.refuse_rcpt.add("gone@example.com")
    sender = SmtpSender(aiosmtpd_peer.url, pool_size=1, timeout_s=5)
    try:
        await sender.send(EMAIL)
        with pytest.raises(RecipientInvalid):
            await sender.send(
                OutgoingEmail(
                    raw=RAW, sender="a@example.com", recipients=("gone@example.com",), message_id=""
                )
            )
        await sender.send(EMAIL)
    finally:
        await sender.close()
    assert [r.rcpt_tos for r in aiosmtpd_peer.received] == [["b@example.com"]] * 2
    assert aiosmtpd_peer.received[0].raw.endswith(b".a line that starts with a dot\r\n")
