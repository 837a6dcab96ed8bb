"""A DKIM key pair for the tests (made once per run), and the DNS look-up dkimpy makes,
answered with its public key."""

from __future__ import annotations

import base64
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
PUBLIC = base64.b64encode(
    KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


def dns_answering(record: bytes) -> Callable[..., bytes]:
    """dkimpy's ``dnsfunc``: the key's TXT record for ``record``, nothing else."""

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == record, name
        return f"v=DKIM1; k=rsa; p={PUBLIC}".encode()

    return dns
