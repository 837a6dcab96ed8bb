"""The pipelined transaction after STARTTLS: aiosmtplib upgrades the connection, the session
takes the TLS transport over, and the message goes through encrypted (the server says so)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.email.test_smtp_pipelining import EMAIL, RAW
from tests.smtp_peer import SmtpPeer
from tidings.email_worker.senders.smtp import SmtpSender


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class TlsPeer(SmtpPeer):
    """The test peer, offering STARTTLS (and PIPELINING); records whether each message came
    over TLS."""

    context: ssl.SSLContext | None = None

    def _protocol(self) -> SMTP:
        proto = SMTP(self, hostname="tls-peer", tls_context=self.context, require_starttls=True)
        self.sessions.add(proto)
        return proto


@pytest.fixture
async def peer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TlsPeer]:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts this server only
    server = await TlsPeer(context=context).start()
    yield server
    await server.stop()


async def test_pipelined_transactions_after_starttls(peer: TlsPeer) -> None:
    sender = SmtpSender(peer.url, pool_size=1, timeout_s=5)
    try:
        assert await sender.send(EMAIL) == "OK queued"
        assert await sender.send(EMAIL) == "OK queued"  # the same TLS connection again
    finally:
        await sender.close()
    assert [r.raw for r in peer.received] == [RAW, RAW]
    # require_starttls: aiosmtpd refuses MAIL before STARTTLS, so both went encrypted.
    assert len(peer.sessions) == 1
