"""Key material the tests make: a browser's subscription keys, and an FCM service account."""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class BrowserKeys:
    """What a browser keeps for one push subscription (RFC 8291 §3): its ECDH key pair
    and the auth secret it shares with the application server."""

    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes

    @classmethod
    def new(cls) -> BrowserKeys:
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)


@dataclass
class ServiceAccountKey:
    private_key: rsa.RSAPrivateKey
    client_email: str
    key_id: str

    @classmethod
    def new(cls) -> ServiceAccountKey:
        return cls(
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            f"tidings-{uuid.uuid4().hex[:6]}@tidings-test.iam.gserviceaccount.com",
            uuid.uuid4().hex,
        )

    def json(self, token_uri: str, project_id: str) -> str:
        """The key file as Google's console hands it out (the fields Tidings reads)."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return json.dumps(
            {
                "type": "service_account",
                "project_id": project_id,
                "private_key_id": self.key_id,
                "private_key": pem,
                "client_email": self.client_email,
                "token_uri": token_uri,
            }
        )


def fcm_token() -> str:
    """Shaped like a real registration token: '<instance id>:APA91b<base64url>'."""
    return f"{b64url(os.urandom(16))}:APA91b{b64url(os.urandom(105))}"
