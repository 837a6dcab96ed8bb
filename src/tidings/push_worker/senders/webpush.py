"""Web Push: RFC 8030 (the protocol), RFC 8291 (aes128gcm message encryption), RFC 8292
(VAPID). pywebpush encrypts (``WebPusher.encode``) and py_vapid signs; the request itself
goes out on httpx's async client, because pywebpush's own ``webpush()`` blocks on
``requests``. Encrypting and signing a payload this small costs well under a millisecond."""

from __future__ import annotations

import base64
import time
from urllib.parse import urlsplit

import httpx
import orjson
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid
from pywebpush import WebPusher

from tidings.core.breaker import CircuitBreaker
from tidings.core.errors import (
    PermanentError,
    ProviderAuthError,
    RecipientInvalid,
    TransientError,
)
from tidings.push_worker.senders import Device, PushContent, retry_after_s, trips_breaker

# RFC 8291 §4: a push message is at most 4096 bytes once encrypted; aes128gcm adds an
# 86-byte header, a 16-byte tag and a 1-byte padding delimiter, leaving 3993 of plaintext.
MAX_PLAINTEXT_BYTES = 4096 - 86 - 16 - 1
# RFC 8292 §2: exp no more than 24 hours ahead. 12 h, and a fresh token an hour before.
VAPID_LIFETIME_S = 12 * 3600
VAPID_RENEW_S = 3600
NOT_CONFIGURED = (
    "Web Push is not configured: set TIDINGS_VAPID_PRIVATE_KEY (`tidings vapid generate`)"
)


def load_vapid(private_key: str) -> Vapid:
    """The key as `tidings vapid generate` prints it (raw, base64url), or DER or PEM."""
    key = private_key.strip()
    if key.startswith("-----BEGIN"):
        return Vapid.from_pem(key.encode())
    return Vapid.from_string(key)


def public_key_b64(vapid: Vapid) -> str:
    """The applicationServerKey browsers subscribe with: the uncompressed point, base64url."""
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def origin_of(endpoint: str) -> str:
    """RFC 8292 §2: ``aud`` is the push resource's origin (scheme, host, non-default port)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


class WebPushSender:
    def __init__(
        self,
        http: httpx.AsyncClient,
        breaker: CircuitBreaker,
        *,
        vapid: Vapid | None,
        subject: str,
    ) -> None:
        self.http = http
        self.breaker = breaker
        self.vapid = vapid
        self.subject = subject
        # aud -> (Authorization header, its exp): one signature per push service per hour.
        self._tokens: dict[str, tuple[str, float]] = {}

    def authorization(self, endpoint: str) -> str:
        assert self.vapid is not None
        aud = origin_of(endpoint)
        cached = self._tokens.get(aud)
        now = time.time()
        if cached is not None and cached[1] - now > VAPID_RENEW_S:
            return cached[0]
        exp = int(now) + VAPID_LIFETIME_S
        header: str = self.vapid.sign({"aud": aud, "sub": self.subject, "exp": exp})[
            "Authorization"
        ]
        self._tokens[aud] = (header, exp)
        return header

    def encrypt(self, device: Device, plaintext: bytes) -> bytes:
        subscription = {
            "endpoint": device.endpoint,
            "keys": {"p256dh": device.p256dh, "auth": device.auth},
        }
        try:
            body: bytes = WebPusher(subscription).encode(plaintext, "aes128gcm")["body"]
        except Exception as exc:  # a key that passed registration but not the cipher
            raise PermanentError(f"cannot encrypt for this subscription: {exc}") from exc
        return body

    async def send(self, device: Device, content: PushContent) -> str:
        if self.vapid is None:
            raise PermanentError(NOT_CONFIGURED)
        if not (device.endpoint and device.p256dh and device.auth):
            raise PermanentError(f"{device.label} has no subscription keys")
        plaintext = orjson.dumps(content.payload())
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise PermanentError(
                f"the push payload is {len(plaintext)} bytes; Web Push carries at most "
                f"{MAX_PLAINTEXT_BYTES} (4096 encrypted)"
            )
        body = self.encrypt(device, plaintext)
        headers = {
            "Authorization": self.authorization(device.endpoint),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(content.ttl_s),
            "Urgency": content.urgency,
        }
        async with self.breaker.guard(trips_breaker):
            try:
                answer = await self.http.post(device.endpoint, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise TransientError(
                    f"push service unreachable: {exc!r}", connection_level=True
                ) from exc
        return classify(answer)

    async def close(self) -> None:
        await self.http.aclose()


def classify(answer: httpx.Response) -> str:
    status = answer.status_code
    said = answer.text[:200].strip()
    if status in (200, 201, 202):
        return f"webpush {status} {answer.headers.get('location', '')}".strip()
    if status in (404, 410):
        raise RecipientInvalid(f"push service answered {status}: subscription gone {said}")
    if status == 429 or status >= 500:
        raise TransientError(
            f"push service answered {status} {said}",
            retry_after_s=retry_after_s(answer.headers.get("retry-after")),
        )
    if status in (401, 403):
        raise ProviderAuthError(f"push service refused our VAPID credentials: {status} {said}")
    raise PermanentError(f"push service refused the message: {status} {said}")
