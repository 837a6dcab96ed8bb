"""Web Push: RFC 8030 (the protocol), RFC 8291 (aes128gcm message encryption), RFC 8292
(VAPID). pywebpush encrypts (``WebPusher.encode``) and py_vapid signs; the request itself
goes out on httpx's async client, because pywebpush's own ``webpush()`` blocks on
``requests``. Encrypting and signing a payload this small costs well under a millisecond."""

from __future__ import annotations

import base64
import logging
import time
from urllib.parse import urlsplit

import httpx
import orjson
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid, VapidException
from pywebpush import WebPusher

from tidings.core.errors import (
    PermanentError,
    RecipientInvalid,
    TransientError,
)
from tidings.push_worker.breakers import MAX_ORIGINS, OriginBreakers
from tidings.push_worker.senders import (
    CallLimits,
    Device,
    PushContent,
    bounded_post,
    retry_after_s,
    trips_breaker,
)
from tidings.push_worker.senders.netguard import NonPublicAddress

log = logging.getLogger("tidings.push.webpush")

# RFC 8291 §4: a push message is at most 4096 bytes once encrypted; aes128gcm adds an
# 86-byte header, a 16-byte tag and a 1-byte padding delimiter, leaving 3993 of plaintext.
MAX_PLAINTEXT_BYTES = 4096 - 86 - 16 - 1
# RFC 8292 §2: exp no more than 24 hours ahead. 12 h, and a fresh token an hour before.
VAPID_LIFETIME_S = 12 * 3600
VAPID_RENEW_S = 3600
NOT_CONFIGURED = (
    "Web Push is not configured: set TIDINGS_VAPID_PRIVATE_KEY (`tidings vapid generate`)"
)
NOT_PUBLIC = "the push service's host resolves to a private or otherwise non-public address"


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
        breakers: OriginBreakers,
        *,
        vapid: Vapid | None,
        subject: str,
        allow_insecure: bool = False,
        limits: CallLimits | None = None,
    ) -> None:
        """``http`` must connect through ``netguard.CheckedTransport`` (see app.py): that is
        where each endpoint's addresses are checked; ``breakers``: one per push service;
        ``limits``: the deadline and answer size of one call."""
        self.http = http
        self.breakers = breakers
        self.vapid = vapid
        self.subject = subject
        self.allow_insecure = allow_insecure
        self.limits = limits or CallLimits()
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
        try:
            header: str = self.vapid.sign({"aud": aud, "sub": self.subject, "exp": exp})[
                "Authorization"
            ]
        except VapidException as exc:
            # py_vapid takes no IPv6-literal origin: no push service has one, and the device
            # can never be sent to (not an exception to crash the attempt on).
            raise RecipientInvalid(f"VAPID cannot name the push service {aud}") from exc
        self._tokens[aud] = (header, exp)
        # Origins are the users' choice: keep the tokens of as many as there are breakers.
        while len(self._tokens) > MAX_ORIGINS:
            self._tokens.pop(next(iter(self._tokens)))
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
        scheme = urlsplit(device.endpoint).scheme
        if scheme != "https" and not (scheme == "http" and self.allow_insecure):
            # Registration refuses these; a row from before that check is not trusted.
            raise RecipientInvalid(f"the endpoint's scheme is {scheme!r}, not https")
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
        async with self.breakers.for_origin(origin_of(device.endpoint)).guard(trips_breaker):
            try:
                answer = await bounded_post(
                    self.http, device.endpoint, self.limits, content=body, headers=headers
                )
            except NonPublicAddress as exc:
                # The addresses go to the log only: the reason is shown to the user, and a
                # name of theirs must not map the network the worker runs in for them.
                log.warning("refused %s: %s", device.label, exc)
                raise RecipientInvalid(NOT_PUBLIC) from exc
            except httpx.HTTPError as exc:
                raise TransientError(
                    f"push service unreachable: {exc!r}", connection_level=True
                ) from exc
        return classify(answer)

    async def close(self) -> None:
        await self.http.aclose()


def classify(answer: httpx.Response) -> str:
    """The answer as a reply or a classified error. Only the status code and a fixed reason
    are kept: the body and headers are the endpoint's (a user's choice of server), and
    whatever lands here is shown in the notification's history and the device's reason."""
    status = answer.status_code
    if status in (200, 201, 202):
        return f"webpush {status} accepted"
    if status in (404, 410):
        raise RecipientInvalid(f"push service answered {status}: subscription gone")
    if status == 429 or status >= 500:
        raise TransientError(
            f"push service answered {status}: try again later",
            retry_after_s=retry_after_s(answer.headers.get("retry-after")),
        )
    if status in (401, 403):
        # The endpoint is the user's choice of server: a refusal there is this device's
        # problem (a subscription made for another VAPID key, or a server that says no to
        # everyone), not an outage of ours to alert on and hold every notification for.
        # Our key itself is checked when the worker starts (app.py signs with it).
        raise RecipientInvalid(
            f"push service refused this subscription ({status}): it does not accept our VAPID key"
        )
    raise PermanentError(f"push service refused the message: {status}")
