"""DKIM key pairs for the tests (made once per run), RSA-2048 and Ed25519, and the DNS look-up
dkimpy makes, answered with the public key's TXT record (RFC 6376 §3.6.1; RFC 8463 §4 for
Ed25519: the raw 32-byte key, not its DER)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


def _pem(key: PrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass(frozen=True)
class DkimKey:
    pem: str
    record: bytes  # the TXT record at <selector>._domainkey.<domain>


def _rsa() -> DkimKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(_pem(key), b"v=DKIM1; k=rsa; p=" + base64.b64encode(der))


def _ed25519() -> DkimKey:
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return DkimKey(_pem(key), b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw))


RSA = _rsa()
ED25519 = _ed25519()
KEYS = {"rsa": RSA, "ed25519": ED25519}
PEM = RSA.pem


def dns_answering(record: bytes, key: DkimKey = RSA) -> Callable[..., bytes]:
    """dkimpy's ``dnsfunc``: ``key``'s TXT record for ``record``, nothing else."""

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == record, name
        return key.record

    return dns
