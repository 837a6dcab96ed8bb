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


# Hosts made only of digits, dots and 0x-hex: IPv4 in the forms inet_aton (and so
# getaddrinfo, curl, browsers) reads but ipaddress does not: "127.1", "2130706433",
# "0x7f000001", "0177.0.0.1". Unless ipaddress reads it as a dotted quad it is refused.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*$")
_HOST_LABELS = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
# Names that are never a public push service (RFC 6761, RFC 6762, ICANN's .internal).
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(ip: IPAddress) -> bool:
    """Reachable on the internet: ``is_global`` (which excludes private, loopback,
    link-local, shared 100.64.0.0/10 …) and not multicast, reserved or unspecified. The push
    worker checks every resolved address with the same rule at send time."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def normalise_host(host: str) -> str:
    """Lower case, without the trailing dot of a fully qualified name ("169.254.169.254."
    is 169.254.169.254 to the resolver)."""
    return host.lower().removesuffix(".")


def _address(host: str) -> IPAddress | None:
    """The host as an IP address literal; None for a name. Numeric forms other than a
    dotted quad are refused, not taken for names."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        raise InvalidInput(
            f"subscription.endpoint: {host} is a numeric host that is not a dotted-quad "
            "IPv4 address"
        )
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str) -> None:
    """An address literal must be public; a name must look like a public DNS name. Where
    a name resolves is checked by the push worker at every send (it can change any time)."""
    ip = _address(host)
    if ip is not None:
        if isinstance(ip, ipaddress.IPv6Address):
            raise InvalidInput(
                "subscription.endpoint: an IPv6 address literal (VAPID cannot name it; push "
                "services have host names)"
            )
        if not is_public(ip):
            raise InvalidInput(
                f"subscription.endpoint: {host} is not a public address (private, loopback, "
                "link-local, shared or reserved)"
            )
        return
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
        raise InvalidInput(f"subscription.endpoint: {host} is a local name")
    if "." not in host or not _HOST_LABELS.match(host):
        # A single label ("metadata", "redis") is completed by the resolver's search list,
        # into the network the worker runs in.
        raise InvalidInput(f"subscription.endpoint: {host} is not a public host name")


def check_endpoint(endpoint: str, *, allow_insecure: bool) -> None:
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as exc:
        raise InvalidInput(f"subscription.endpoint: not a valid URL: {exc}") from exc
    host = normalise_host(parts.hostname or "")
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
    check_host(host)


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
