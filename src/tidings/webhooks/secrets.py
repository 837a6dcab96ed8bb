"""Signing secrets: made, shown once, kept encrypted.

A secret is ``whsec_`` + base64 of 32 random bytes (the Standard Webhooks form; the
specification asks for 24 to 64). The gateway keeps it as a Fernet token (AES-128-CBC and an
HMAC-SHA256, from ``cryptography``) under a key derived with HKDF from ``TIDINGS_SECRET_KEY``:
a copy of the database alone does not reveal a secret. The worker needs the plain secret to
sign, so a one-way hash (as for API keys) cannot do; rotating TIDINGS_SECRET_KEY makes the
stored secrets unreadable (rotate every endpoint's secret afterwards)."""

from __future__ import annotations

import base64
import secrets as random

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(random.token_bytes(SECRET_BYTES)).decode()


class SecretBox:
    """Encrypts and decrypts endpoint secrets with a key derived from the secret key."""

    def __init__(self, secret_key: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"tidings webhook secrets"
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def open(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(token)).decode()
        except InvalidToken as exc:
            raise ValueError(
                "a webhook secret cannot be decrypted: TIDINGS_SECRET_KEY changed since it was "
                "made; rotate the endpoint's secret"
            ) from exc
