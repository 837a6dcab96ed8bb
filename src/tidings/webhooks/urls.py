"""Which endpoint URLs are accepted: https only (plain http to a loopback address behind the
development flag), no credentials in the URL, and a host whose every address is public,
checked at registration with the same rule (tidings.core.netguard) the worker applies again
at every send, to the address it then connects to."""

from __future__ import annotations

import asyncio
import ipaddress
from urllib.parse import urlsplit

from tidings.core.netguard import Resolver, allowed, system_resolver

MAX_URL = 2000
# Names that never reach a public receiver (RFC 6761, RFC 6762, ICANN's .internal).
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")
RESOLVE_S = 3.0


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def check_url(url: str, *, allow_insecure: bool, resolve: Resolver = system_resolver) -> str:
    """``url`` as it is kept; ValueError saying why it is refused. A name that does not
    resolve now is accepted (the worker checks it at every send)."""
    if len(url) > MAX_URL:
        raise ValueError(f"url: longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"url: not a valid URL: {exc}") from exc
    host = (parts.hostname or "").lower().removesuffix(".")
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError("url: an absolute https:// URL")
    if parts.username or parts.password:
        raise ValueError("url: credentials in the URL are not allowed (the signature is)")
    if parts.fragment:
        raise ValueError("url: no #fragment")
    literal = _literal(host)
    if literal is not None:
        addresses = [str(literal)]
    elif host == "localhost" or host.endswith(LOCAL_SUFFIXES):
        addresses = ["127.0.0.1"] if host == "localhost" else []
        if not addresses:
            raise ValueError(f"url: {host} is a local name")
    else:
        try:
            async with asyncio.timeout(RESOLVE_S):
                addresses = await resolve(host, port)
        except (OSError, UnicodeError, TimeoutError):
            addresses = []
    refused = [
        a for a in addresses if not allowed(ipaddress.ip_address(a), allow_loopback=allow_insecure)
    ]
    if refused:
        raise ValueError(
            f"url: {host} is (or resolves to) a non-public address ({', '.join(refused)}): "
            "private, loopback, link-local and reserved ranges are refused"
        )
    loopback = bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    if parts.scheme == "http" and not (allow_insecure and loopback):
        raise ValueError("url: https only (plain http only to loopback, in development)")
    return url
