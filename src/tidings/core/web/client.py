"""The client one service uses to call another: the service credential, the correlation id,
a circuit breaker and discovery."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any, Literal, NamedTuple

import httpx

from tidings.core.breaker import BreakerPolicy, CircuitBreaker
from tidings.core.discovery import Endpoints, Registry
from tidings.core.errors import DependencyUnavailable, InvalidInput, NotFound
from tidings.core.logs import CORRELATION_HEADER, correlation_id
from tidings.core.metrics import watch_breaker
from tidings.core.settings import TidingsSettings


async def _add_correlation(request: httpx.Request) -> None:
    cid = correlation_id.get()
    if cid:
        request.headers[CORRELATION_HEADER] = cid


def make_http_client(
    base_url: str, timeout_s: float, *, token: str | None = None
) -> httpx.AsyncClient:
    """A pooled client that carries the correlation id on every request (and ``token``, the
    service credential, when given)."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"} if token else None,
        timeout=timeout_s,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
        event_hooks={"request": [_add_correlation]},
    )


class _Call(NamedTuple):
    method: str
    path: str
    json: Any = None
    params: Mapping[str, str] | None = None
    token: str | None = None  # another credential than the service's


class ServiceClient:
    """Calls another Tidings service and unwraps its envelope.

    httpx's exceptions stop here: a refused connection or a 5xx becomes
    ``DependencyUnavailable``, a 404 ``NotFound``, a 4xx ``InvalidInput``.
    """

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        breaker: CircuitBreaker | None = None,
        endpoints: Endpoints | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.breaker = breaker
        self.endpoints = endpoints

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> Any:
        """The answer's ``data``; through the breaker, where unreachability counts. ``token``:
        another credential than the service's (the dashboard's admin writes)."""
        call = _Call(method, path, json, params, token)
        if self.breaker is None:
            return await self._request(call)
        async with self.breaker.guard(lambda e: isinstance(e, DependencyUnavailable)):
            return await self._request(call)

    async def _request(self, call: _Call) -> Any:
        method, path, json, params, token = call
        url = (await self.endpoints.pick()) + path if self.endpoints is not None else path
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            response = await self.client.request(
                method, url, json=json, params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(f"{self.name} service unreachable: {exc!r}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise DependencyUnavailable(
                f"{self.name} service answered {response.status_code} without an envelope"
            ) from exc
        if response.status_code in (401, 403):
            # Our own credential refused: a misconfiguration, not the caller's input.
            raise DependencyUnavailable(
                f"{self.name} service refused the service credential: {body.get('error')}"
            )
        if response.status_code == 404:
            raise NotFound(body.get("error") or f"not found at {self.name} service")
        if response.status_code >= 500:
            raise DependencyUnavailable(
                f"{self.name} service answered {response.status_code}: {body.get('error')}"
            )
        if response.status_code >= 400:
            raise InvalidInput(body.get("error") or f"{self.name} service refused the request")
        return body.get("data")

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json: Any) -> Any:
        return await self.request("POST", path, json=json)

    async def ping(self) -> None:
        """For /health: reachable, and its breaker (if any) closed."""
        if self.breaker is not None and (problem := await self.breaker.health()):
            raise DependencyUnavailable(problem)
        await self._request(_Call("GET", "/health"))

    async def aclose(self) -> None:
        await self.client.aclose()


def service_client(
    service: Literal["users", "templates"],
    settings: TidingsSettings,
    stack: AsyncExitStack,
    *,
    caller: str,
    breaker: BreakerPolicy,
    registry: Registry | None = None,
) -> ServiceClient:
    """The one way a service looks things up in another: the service credential, a circuit
    breaker named ``service`` with the caller's ``breaker`` policy (reported in /metrics),
    discovery when a registry is given and no static URL is set; the connections close with
    ``stack``. ``service`` is only a name here: where it is found is the settings' answer
    (``url_of``, ``discovers``)."""
    http = make_http_client(
        settings.url_of(service), settings.http_timeout_s, token=settings.secret("service_token")
    )
    stack.push_async_callback(http.aclose)
    guard = breaker.breaker(service)
    watch_breaker(caller, service, lambda: guard.state)
    endpoints = Endpoints(
        service, settings.url_of(service), registry if settings.discovers(service) else None
    )
    return ServiceClient(service, http, guard, endpoints)
