"""Where the Web Push sender may connect: public addresses only (SSRF guard).

Endpoints come from users, and the users service checks them at registration, but a host
name can resolve to anything, and differently at every look-up. So at send time every
connection is made here: the host is resolved with the event loop's ``getaddrinfo``, the
request is refused unless *every* address is public (``is_global``, not multicast,
reserved or unspecified), and the socket is opened to one of the addresses just checked, never
to a second resolution of the name (no DNS-rebinding window between check and connect).
TLS still verifies the certificate against the endpoint's host name (SNI and Host header are
untouched: httpcore takes them from the URL, only the TCP connect goes through here).

With ``TIDINGS_WEBPUSH_ALLOW_INSECURE=true`` loopback addresses pass as well (development and
tests); private, link-local and the like never do."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

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
    """The same rule as the users service's registration check (services share no code
    but core, so it is repeated there)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def allowed(ip: IPAddress, *, allow_loopback: bool) -> bool:
    return is_public(ip) or (allow_loopback and ip.is_loopback)


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # An IPv6 link-local answer carries its zone ("fe80::1%eth0"); the zone is no address.
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the check above before every TCP connect."""

    def __init__(self, *, allow_loopback: bool, resolve: Resolver = system_resolver) -> None:
        self.allow_loopback = allow_loopback
        self.resolve = resolve
        self.inner = httpcore.AnyIOBackend()

    async def checked_addresses(self, host: str, port: int, limit_s: float | None) -> list[str]:
        try:
            async with asyncio.timeout(limit_s):
                found = await self.resolve(host, port)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        if not found:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        refused = [
            a
            for a in found
            if not allowed(ipaddress.ip_address(a), allow_loopback=self.allow_loopback)
        ]
        if refused:
            raise NonPublicAddress(host, refused)
        return found

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
        raise httpcore.ConnectError("Web Push never connects to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over ``CheckedBackend``. httpx does not take a network backend, so
    the connection pool it built is replaced by the same pool with ours."""

    def __init__(self, backend: CheckedBackend, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )
