"""Where a sender to addresses others chose (Web Push, outbound webhooks) may connect:
public addresses only (SSRF guard).

Endpoints come from users and clients, and they are checked at registration, but a host
name can resolve to anything, and differently at every look-up. So at send time every
connection is made here: the host is resolved with the event loop's ``getaddrinfo``, the
request is refused unless *every* address is public (``is_global``, not multicast,
reserved or unspecified), and the socket is opened to one of the addresses just checked, never
to a second resolution of the name (no DNS-rebinding window between check and connect).
TLS still verifies the certificate against the endpoint's host name (SNI and Host header are
untouched: httpcore takes them from the URL, only the TCP connect goes through here).

With ``allow_loopback`` (``TIDINGS_WEBPUSH_ALLOW_INSECURE``, ``TIDINGS_WEBHOOK_ALLOW_INSECURE``)
loopback addresses pass as well (development and tests); private, link-local and the like
never do. Moved here from the push worker so the webhooks worker shares it."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp.abc
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to; the event loop's getaddrinfo by default.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class NonPublicAddress(Exception):
    """The endpoint's host resolves to an address the worker must not connect to. Not an
    httpx/httpcore error on purpose: it passes through httpx unchanged, and is never taken
    for a connection failure (it must not be retried, nor count towards a breaker)."""

    def __init__(self, host: str, addresses: Sequence[str]) -> None:
        super().__init__(f"{host} resolves to non-public addresses {', '.join(addresses)}")
        self.host = host
        self.addresses = list(addresses)


def is_public(ip: IPAddress) -> bool:
    """The same rule as the users service's registration check (written before this moved
    to core, so it is repeated there)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def allowed(ip: IPAddress, *, allow_loopback: bool) -> bool:
    return is_public(ip) or (allow_loopback and ip.is_loopback)


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # An IPv6 link-local answer carries its zone ("fe80::1%eth0"); the zone is no address.
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


async def checked_addresses(
    host: str, port: int, *, allow_loopback: bool, resolve: Resolver, limit_s: float | None
) -> list[str]:
    """Every address ``host`` resolves to, once all of them passed ``allowed``: NonPublicAddress
    if one did not; OSError if it does not resolve (UnicodeError too), TimeoutError past
    ``limit_s``. The one check every sender's connect goes through."""
    try:
        async with asyncio.timeout(limit_s):
            found = await resolve(host, port)
    except TimeoutError:
        raise
    except (OSError, UnicodeError) as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from exc
    if not found:
        raise OSError(f"{host} resolves to no address")
    refused = [
        a for a in found if not allowed(ipaddress.ip_address(a), allow_loopback=allow_loopback)
    ]
    if refused:
        raise NonPublicAddress(host, refused)
    return found


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the check above before every TCP connect."""

    def __init__(self, *, allow_loopback: bool, resolve: Resolver = system_resolver) -> None:
        self.allow_loopback = allow_loopback
        self.resolve = resolve
        self.inner = httpcore.AnyIOBackend()

    async def checked_addresses(self, host: str, port: int, limit_s: float | None) -> list[str]:
        try:
            return await checked_addresses(
                host,
                port,
                allow_loopback=self.allow_loopback,
                resolve=self.resolve,
                limit_s=limit_s,
            )
        except TimeoutError as exc:  # before OSError, of which it is a subclass
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:  # socket.gaierror is an OSError
            raise httpcore.ConnectError(str(exc)) from exc

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.checked_addresses(host, port, timeout)
        last: Exception | None = None
        for address in addresses:  # in the resolver's order, as a plain connect would
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("never to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class CheckedResolver(aiohttp.abc.AbstractResolver):
    """The same check for aiohttp's client (``aiohttp.TCPConnector(resolver=…,
    use_dns_cache=False)``): the connector connects to the addresses returned here, so to
    checked ones only; TLS verifies the certificate against the URL's host name (aiohttp
    keeps it for SNI). aiohttp does not ask a resolver about a literal address: the sender
    checks literals itself (``check_literal``)."""

    def __init__(
        self, *, allow_loopback: bool, resolve: Resolver = system_resolver, limit_s: float
    ) -> None:
        self.allow_loopback = allow_loopback
        self.resolve_name = resolve
        self.limit_s = limit_s

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        found = await checked_addresses(
            host,
            port,
            allow_loopback=self.allow_loopback,
            resolve=self.resolve_name,
            limit_s=self.limit_s,
        )
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in found
        ]

    def check_literal(self, host: str) -> bool:
        """Whether ``host`` is a literal address; NonPublicAddress if it is one that is not
        allowed (a name: nothing to check here, the connector asks ``resolve``)."""
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        if not allowed(ip, allow_loopback=self.allow_loopback):
            raise NonPublicAddress(host, [str(ip)])
        return True

    async def close(self) -> None:
        return None


def tls_context() -> ssl.SSLContext:
    """Certificates verified against certifi's roots, the environment ignored (the same
    context for httpx's and aiohttp's clients)."""
    return httpx.create_ssl_context(trust_env=False)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over ``CheckedBackend``. httpx does not take a network backend, so
    the connection pool it built is replaced by the same pool with ours."""

    def __init__(self, backend: CheckedBackend, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


@dataclass(frozen=True)
class CallLimits:
    """Bounds on one call to a server someone else chose (a push service, a webhook):
    ``deadline_s`` for the whole exchange (httpx's timeouts are per connect, read or write,
    so a server trickling a byte at a time would hold a send forever), and ``max_body_bytes``
    read of its answer (the rest is never read; the connection is closed). The values are
    the settings' (TIDINGS_PUSH_DEADLINE_S …, TIDINGS_WEBHOOK_TIMEOUT_S …)."""

    deadline_s: float
    max_body_bytes: int


async def bounded_post(
    http: httpx.AsyncClient, url: str, limits: CallLimits, **kwargs: Any
) -> httpx.Response:
    """POST and read at most ``limits.max_body_bytes`` of the answer, all within
    ``limits.deadline_s``; past the deadline httpx.TimeoutException, as for httpx's own
    timeouts, so a caller handles every failure to get an answer as httpx.HTTPError. The
    answer comes back as a
    response holding the bytes read: a body asked as identity, and one that comes encoded
    anyway is dropped (a small compressed body may inflate to gigabytes)."""
    headers = {**kwargs.pop("headers", {}), "Accept-Encoding": "identity"}
    try:
        async with asyncio.timeout(limits.deadline_s):
            async with http.stream("POST", url, headers=headers, **kwargs) as answer:
                body = bytearray()
                encoded = answer.headers.get("content-encoding", "identity").lower() != "identity"
                async for chunk in answer.aiter_raw():
                    if encoded:
                        break
                    body += chunk[: limits.max_body_bytes - len(body)]
                    if len(body) >= limits.max_body_bytes:
                        break
    except TimeoutError as exc:
        raise httpx.TimeoutException(f"did not answer within {limits.deadline_s:g} s") from exc
    kept = {k: v for k, v in answer.headers.items() if k.lower() != "content-encoding"}
    kept.pop("content-length", None)
    return httpx.Response(answer.status_code, headers=kept, content=bytes(body))
