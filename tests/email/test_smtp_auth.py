"""SMTP AUTH only over TLS: a server that offers AUTH but no STARTTLS gets no password unless
TIDINGS_SMTP_ALLOW_PLAINTEXT_AUTH says so (a development relay); without credentials nothing
changes (the capture server of `tidings up`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.smtp_peer import SmtpPeer
from tidings.core.errors import ProviderAuthError
from tidings.email_worker.compose import OutgoingEmail
from tidings.email_worker.senders.smtp import SmtpSender

RAW = b"From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: <m1@example.com>\r\n\r\nhi\r\n"
EMAIL = OutgoingEmail(
    raw=RAW, sender="a@example.com", recipients=("b@example.com",), message_id="<m1@example.com>"
)


@dataclass
class AuthPeer(SmtpPeer):
    """The test peer, offering AUTH PLAIN/LOGIN in clear (aiosmtpd's auth_require_tls off)."""

    logins: list[tuple[str, str]] = field(default_factory=list)

    def _authenticate(
        self, server: SMTP, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=True)

    def _protocol(self) -> SMTP:
        proto = SMTP(
            self, hostname="auth-peer", authenticator=self._authenticate, auth_require_tls=False
        )
        self.sessions.add(proto)
        return proto


@pytest.fixture
async def peer() -> AsyncIterator[AuthPeer]:
    server = await AuthPeer().start()
    yield server
    await server.stop()


def _url(peer: AuthPeer, credentials: str = "") -> str:
    return f"smtp://{credentials}127.0.0.1:{peer.port}"


async def test_no_password_in_clear_by_default(peer: AuthPeer) -> None:
    sender = SmtpSender(_url(peer, "mailer:s3cret@"), pool_size=1, timeout_s=5)
    try:
        with pytest.raises(ProviderAuthError, match="offers no TLS") as failed:
            await sender.send(EMAIL)
    finally:
        await sender.close()
    assert "TIDINGS_SMTP_ALLOW_PLAINTEXT_AUTH" in failed.value.message
    assert "s3cret" not in failed.value.message
    assert peer.logins == [] and peer.received == []


async def test_plaintext_auth_when_allowed(peer: AuthPeer) -> None:
    sender = SmtpSender(
        _url(peer, "mailer@"),
        pool_size=1,
        timeout_s=5,
        password="s3cret",
        allow_plaintext_auth=True,
    )
    try:
        await sender.send(EMAIL)
    finally:
        await sender.close()
    assert peer.logins == [("mailer", "s3cret")]
    assert [r.rcpt_tos for r in peer.received] == [["b@example.com"]]


async def test_without_credentials_nothing_changes(peer: AuthPeer) -> None:
    sender = SmtpSender(_url(peer), pool_size=1, timeout_s=5)
    try:
        await sender.send(EMAIL)
    finally:
        await sender.close()
    assert peer.logins == [] and len(peer.received) == 1
