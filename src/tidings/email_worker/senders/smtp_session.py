"""The mail transaction (MAIL FROM, RCPT TO, DATA) on a connection aiosmtplib opened, in one
write when the server offers PIPELINING (RFC 2920).

Why this is ours and not aiosmtplib's: aiosmtplib (5.x) sends each command and waits for its
reply, four round trips a message; its protocol keeps one reply at a time and drops bytes that
arrive while a reply waits to be read, so pipelined replies cannot be read through it (no other
kept asyncio SMTP client pipelines either). aiosmtplib still does everything before the
transaction (greeting, EHLO, STARTTLS, AUTH); then the connection's transport is handed to the
small protocol below, which writes the commands and reads their replies in order. Failures
are aiosmtplib's exceptions (SMTPSenderRefused, SMTPRecipientsRefused, SMTPDataError,
SMTPServerDisconnected, a TimeoutError), so senders/smtp.py classifies them as before.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque

import aiosmtplib
from aiosmtplib import SMTPResponse
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import normalize_message_line_endings

# aiosmtplib's bounds (protocol.py): a reply line, a whole reply.
MAX_LINE = 8192
MAX_REPLY = MAX_LINE * 4
_PERIOD = re.compile(rb"(?m)^\.")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")  # no CR/LF/NUL in a command: no injection


class _Replies(asyncio.Protocol):
    """Every complete reply the server sends, kept in order until read."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.replies: deque[SMTPResponse] = deque()
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        lines: list[bytes] = []
        start = 0
        while (end := self.buffer.find(b"\n", start)) >= 0:
            line = bytes(self.buffer[start : end + 1])
            start = end + 1
            if len(line) > MAX_LINE or not line[:3].isdigit():
                self.error = aiosmtplib.SMTPResponseException(-1, f"Malformed reply: {line!r}")
                break
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":  # the reply's last line
                text = b"\n".join(lines).decode("utf-8", "surrogateescape")
                self.replies.append(SMTPResponse(int(line[:3]), text))
                del self.buffer[:start]
                lines, start = [], 0
        if len(self.buffer) > MAX_REPLY:
            self.error = aiosmtplib.SMTPResponseException(-1, "Reply too long")
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
        lost.__cause__ = exc
        self.error = self.error or lost
        self._wake()

    def eof_received(self) -> bool:
        self.error = self.error or aiosmtplib.SMTPServerDisconnected("Unexpected EOF received")
        self._wake()
        return False

    async def read(self) -> SMTPResponse:
        while not self.replies:
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.replies.popleft()


class SmtpSession:
    """One open SMTP connection, past EHLO (and STARTTLS, AUTH): mail transactions on it."""

    def __init__(self, smtp: aiosmtplib.SMTP, timeout_s: float) -> None:
        if smtp.protocol is None or smtp.protocol.transport is None:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        self.pipelining = smtp.supports_extension("pipelining")
        self.size = smtp.supports_extension("size")
        self.timeout_s = timeout_s
        self.replies = _Replies()
        # The transport (the TLS one after STARTTLS) is ours from here; aiosmtplib's
        # object is not used again.
        self.transport: asyncio.Transport = smtp.protocol.transport  # type: ignore[assignment]
        self.transport.set_protocol(self.replies)

    @property
    def is_connected(self) -> bool:
        return self.replies.error is None and not self.transport.is_closing()

    def _write(self, data: bytes) -> None:
        # The transport buffers what it cannot send at once; a message is bounded in size.
        if not self.is_connected:
            raise self.replies.error or aiosmtplib.SMTPServerDisconnected("Connection lost")
        self.transport.write(data)

    async def _command(self, line: bytes) -> SMTPResponse:
        self._write(line)
        return await self.replies.read()

    async def sendmail(self, sender: str, recipients: list[str], raw: bytes) -> str:
        """MAIL, RCPT for each recipient, DATA: the data reply's text; raises as aiosmtplib's
        ``sendmail`` does. The caller closes the connection after any exception."""
        message = normalize_message_line_endings(raw)
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        data = _PERIOD.sub(b"..", message) + b".\r\n"
        mail = b"MAIL FROM:" + quote_address(sender).encode("ascii")
        if self.size:  # RFC 1870: the message's octets, CRLFs included
            mail += b" SIZE=%d" % len(message)
        rcpts = [b"RCPT TO:" + quote_address(r).encode("ascii") for r in recipients]
        commands = [mail, *rcpts, b"DATA"]
        if any(_CONTROL.search(c) for c in commands):
            raise ValueError("Command arg contains a prohibited control character")
        async with asyncio.timeout(self.timeout_s):
            return await self._transaction(sender, recipients, commands, data)

    async def _transaction(
        self, sender: str, recipients: list[str], commands: list[bytes], data: bytes
    ) -> str:
        if self.pipelining:
            # RFC 2920: MAIL, every RCPT and DATA in one write, their replies read in order.
            self._write(b"".join(c + b"\r\n" for c in commands))
            replies = [await self.replies.read() for _ in commands]
        else:
            replies = [await self._command(commands[0] + b"\r\n")]
            if replies[0].code == 250:
                for command in commands[1:-1]:
                    replies.append(await self._command(command + b"\r\n"))
        mail = replies[0]
        failure: aiosmtplib.SMTPException | None = None
        if mail.code != 250:
            failure = aiosmtplib.SMTPSenderRefused(mail.code, mail.message, sender)
        else:
            refused = [
                aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, address)
                for address, reply in zip(recipients, replies[1:], strict=False)
                if reply.code not in (250, 251)
            ]
            if len(refused) == len(recipients):
                failure = aiosmtplib.SMTPRecipientsRefused(refused)
        if not self.pipelining:
            if failure is not None:
                raise failure
            replies.append(await self._command(b"DATA\r\n"))
        start = replies[-1]
        if start.code != 354:
            raise failure or aiosmtplib.SMTPDataError(start.code, start.message)
        if failure is not None:
            # The server took DATA with no envelope (RFC 2920 allows it): end it empty.
            await self._command(b".\r\n")
            raise failure
        done = await self._command(data)
        if done.code != 250:
            raise aiosmtplib.SMTPDataError(done.code, done.message)
        return done.message

    async def quit(self) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._command(b"QUIT\r\n")
        finally:
            self.close()

    def close(self) -> None:
        self.transport.close()
