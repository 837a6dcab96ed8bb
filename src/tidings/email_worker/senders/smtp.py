"""SMTP over a small pool of reused connections: aiosmtplib opens each (EHLO, STARTTLS, AUTH),
smtp_session.SmtpSession runs the mail transactions on it, pipelined when the server offers
PIPELINING (one write and one round trip for MAIL, RCPT and DATA instead of three).

Reusing connections matters: a new SMTP dialogue per message costs more than the message
(on these machines about 0.5k messages/s with a new dialogue each, 1.7k/s reused). Every
aiosmtplib exception is classified here, into the core taxonomy.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import unquote, urlsplit

import aiosmtplib

from tidings.core.errors import (
    DeliveryError,
    PermanentError,
    ProviderAuthError,
    RecipientInvalid,
    TransientError,
)
from tidings.core.flow import renew_lease
from tidings.email_worker.compose import OutgoingEmail
from tidings.email_worker.senders import EmailSender
from tidings.email_worker.senders.smtp_session import SmtpSession

_RECIPIENT_CODES = {550, 551, 553}
_AUTH_CODES = {530, 534, 535}


def classify_reply(code: int, text: str) -> DeliveryError:
    """An SMTP reply code, in the one taxonomy of core."""
    reason = f"SMTP {code} {text}".strip()
    if 400 <= code < 500:
        # 421: the server is closing the connection; it, not this message, is the problem.
        return TransientError(reason, connection_level=code == 421)
    if code in _RECIPIENT_CODES:
        return RecipientInvalid(reason)
    if code in _AUTH_CODES:
        return ProviderAuthError(reason)
    return PermanentError(reason)


def classify(exc: Exception) -> DeliveryError:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return classify_reply(first.code, first.message)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and not isinstance(
        exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError
    ):
        return classify_reply(exc.code, exc.message)
    return TransientError(
        f"SMTP connection failed: {exc.__class__.__name__}: {exc}", connection_level=True
    )


async def _session(smtp: aiosmtplib.SMTP, timeout_s: float) -> SmtpSession:
    """The connection, greeted, as a session of mail transactions. After STARTTLS aiosmtplib
    leaves the new EHLO (RFC 3207) to its next command, which is now the session's: it is
    sent here, so the session also knows the extensions (PIPELINING) offered over TLS."""
    try:
        if smtp.is_ehlo_or_helo_needed:
            try:
                await smtp.ehlo()
            except aiosmtplib.SMTPHeloError:
                await smtp.helo()
        return SmtpSession(smtp, timeout_s)
    except BaseException:
        smtp.close()
        raise


class SmtpSender(EmailSender):
    def __init__(
        self,
        url: str,
        *,
        pool_size: int,
        timeout_s: float,
        password: str | None = None,
        allow_plaintext_auth: bool = False,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"TIDINGS_SMTP_URL must be smtp:// or smtps://, not {parts.scheme}://")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self.implicit_tls = parts.scheme == "smtps"
        self.username = unquote(parts.username) if parts.username else None
        self.password = password or (unquote(parts.password) if parts.password else None)
        self.timeout_s = timeout_s
        self.allow_plaintext_auth = allow_plaintext_auth
        self._pool: asyncio.Queue[SmtpSession | None] = asyncio.Queue()
        for _ in range(pool_size):
            self._pool.put_nowait(None)

    async def _connect(self) -> SmtpSession:
        # Connect first (aiosmtplib upgrades with STARTTLS when the server offers it), log in
        # after: aiosmtplib's own login on connect would send the password in clear to a
        # server that offers no STARTTLS, or to a man in the middle who struck it from EHLO.
        smtp = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, use_tls=self.implicit_tls, timeout=self.timeout_s
        )
        await smtp.connect()
        if self.username is None:
            return await _session(smtp, self.timeout_s)
        if smtp.get_transport_info("sslcontext") is None and not self.allow_plaintext_auth:
            smtp.close()
            raise ProviderAuthError(
                f"the SMTP server {self.host}:{self.port} offers no TLS (no STARTTLS): the "
                "password is not sent in clear; use smtps:// or a server with STARTTLS, or "
                "set TIDINGS_SMTP_ALLOW_PLAINTEXT_AUTH=true for a development relay"
            )
        try:
            await smtp.login(self.username, self.password or "")
        except BaseException:
            smtp.close()
            raise
        return await _session(smtp, self.timeout_s)

    async def send(self, email: OutgoingEmail, envelope_from: str | None = None) -> str:
        smtp = await self._pool.get()
        reusable = False
        try:
            for fresh in (False, True):
                if smtp is None or not smtp.is_connected or fresh:
                    if smtp is not None:
                        smtp.close()
                    smtp = await self._connect()
                # The lease runs from here, after the wait for a pooled connection (renewed
                # only when the claim's lease might end before the dialogue's deadline).
                await renew_lease(self.timeout_s)
                try:
                    # The bytes as compose built them (and DKIM signed them): no re-serialising.
                    reply = await smtp.sendmail(
                        envelope_from or email.sender, list(email.recipients), email.raw
                    )
                    reusable = True
                    return reply
                except aiosmtplib.SMTPServerDisconnected:
                    # A pooled connection the server closed while idle: one fresh try.
                    if fresh:
                        raise
            raise AssertionError("unreachable")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise classify(exc) from exc
        finally:
            # Only a connection that finished its dialogue goes back to the pool; after a
            # refusal, a timeout or a cancellation mid-dialogue its state is unknown.
            if not reusable and smtp is not None:
                smtp.close()
                smtp = None
            self._pool.put_nowait(smtp)

    async def close(self) -> None:
        while not self._pool.empty():
            smtp = self._pool.get_nowait()
            if smtp is not None and smtp.is_connected:
                with contextlib.suppress(Exception):
                    await smtp.quit()
