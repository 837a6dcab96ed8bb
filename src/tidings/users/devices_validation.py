"""Checks a push device must pass before it is stored: a device that could never receive a
push is refused at registration (422 with the reason), not discovered at the first send."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from tidings.core.errors import InvalidInput

# FCM registration tokens are opaque, but every one seen is 100-4096 characters of the
# base64url alphabet plus ':' (e.g. "<instance id>:APA91b…").
FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:\-]{100,4096}$")
_B64URL = re.compile(r"^[A-Za-z0-9_\-]+={0,2}$")


def b64url_decode(value: str, field: str) -> bytes:
    """RFC 4648 §5 (base64url); padding optional, as browsers leave it out."""
    if not _B64URL.match(value):
        raise InvalidInput(f"{field}: not base64url (A-Z a-z 0-9 - _)")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{field}: not base64url: {exc}") from exc


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_internal(host: str) -> bool:
    """An address literal no public push service has (SSRF guard: the push worker POSTs to
    whatever endpoint is registered)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified


def check_endpoint(endpoint: str, *, allow_insecure: bool) -> None:
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidInput("subscription.endpoint: not an absolute URL with a host")
    if parts.username or parts.password:
        raise InvalidInput("subscription.endpoint: credentials in the URL are not allowed")
    if allow_insecure and _is_loopback(host):
        if parts.scheme not in ("http", "https"):
            raise InvalidInput("subscription.endpoint: scheme must be https (or http on loopback)")
        return
    if parts.scheme != "https":
        hint = (
            "" if allow_insecure else " (http only on loopback with TIDINGS_WEBPUSH_ALLOW_INSECURE)"
        )
        raise InvalidInput(f"subscription.endpoint: scheme must be https{hint}")
    if _is_internal(host):
        raise InvalidInput(
            f"subscription.endpoint: {host} is a private, loopback or link-local address"
        )


def check_p256dh(value: str) -> None:
    raw = b64url_decode(value, "subscription.keys.p256dh")
    if len(raw) != 65 or raw[0] != 0x04:
        raise InvalidInput(
            "subscription.keys.p256dh: must be a 65-byte uncompressed P-256 point "
            f"(0x04, x, y); got {len(raw)} bytes"
        )
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise InvalidInput("subscription.keys.p256dh: not a point on the P-256 curve") from exc


def check_auth(value: str) -> None:
    raw = b64url_decode(value, "subscription.keys.auth")
    if len(raw) != 16:
        raise InvalidInput(f"subscription.keys.auth: must be 16 bytes; got {len(raw)}")


def check_fcm_token(token: str, field: str = "token") -> None:
    if not FCM_TOKEN.match(token):
        raise InvalidInput(
            f"{field}: not an FCM registration token (100-4096 characters of A-Z a-z 0-9 _ : -)"
        )


def check_webpush(endpoint: str, p256dh: str, auth: str, *, allow_insecure: bool) -> None:
    check_endpoint(endpoint, allow_insecure=allow_insecure)
    check_p256dh(p256dh)
    check_auth(auth)
