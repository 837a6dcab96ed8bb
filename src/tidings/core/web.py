"""HTTP plumbing shared by every service: the app factory, middleware, error handlers,
/health, and the client one service uses to call another.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tidings.core.auth import bearer, same_secret
from tidings.core.breaker import CircuitBreaker
from tidings.core.cache import RedisOptions
from tidings.core.db import DRIVER_ERRORS, Database, DbTimeouts, open_database, unavailable
from tidings.core.discovery import INSTANCE_HEADER, Endpoints, Heartbeat, Registry
from tidings.core.envelope import REASONS, Envelope, failure, ok
from tidings.core.errors import (
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    TidingsError,
    Unauthorized,
)
from tidings.core.logs import CORRELATION_HEADER, correlation_id, new_correlation_id
from tidings.core.metrics import HTTP_SECONDS, exposition, watch_breaker
from tidings.core.openapi import truthful_openapi
from tidings.core.settings import ServiceName, TidingsSettings

log = logging.getLogger("tidings.http")

HealthCheck = Callable[[], Awaitable[Any]]
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class CorrelationMiddleware:
    """Sets the correlation id for the request (from the header, or a new one), echoes it in
    the response, and logs one line per request with its duration."""

    def __init__(self, app: ASGIApp, instance_id: str = "", service: str = "") -> None:
        self.app = app
        self.service = service
        self.instance = (INSTANCE_HEADER.lower().encode(), instance_id.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = (
            dict(scope["headers"]).get(CORRELATION_HEADER.lower().encode(), b"").decode("latin-1")
        )
        cid = given if _SAFE_ID.match(given) else new_correlation_id()
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).extend(
                    [(CORRELATION_HEADER.lower().encode(), cid.encode()), self.instance]
                )
            await send(message)

        started_response = False

        async def send_tracked(message: Message) -> None:
            nonlocal started_response
            started_response = started_response or message["type"] == "http.response.start"
            await send_with_id(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            # Here rather than in an exception handler, so the 500 and its log line still
            # carry the correlation id.
            log.exception("unhandled error")
            if started_response:
                raise
            await JSONResponse(failure("internal error", "internal error"), 500)(
                scope, receive, send_with_id
            )
        finally:
            route = scope.get("route")
            HTTP_SECONDS.labels(
                self.service, scope["method"], getattr(route, "path", "unmatched"), str(status)
            ).observe(time.perf_counter() - started)
            log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1e3, 2),
                },
            )
            correlation_id.reset(token)


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, by Content-Length or by counting."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse(
                failure(f"request body exceeds {self.max_bytes} bytes", REASONS[413]), 413
            )
            await response(scope, receive, send)
            return
        # No Content-Length (chunked): read the body here, up to the limit, then replay it.
        # Refusing from inside the app's receive() would surface as a parse error instead.
        buffered: list[Message] = []
        seen = 0
        more = True
        while more:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
            if seen > self.max_bytes:
                response = JSONResponse(
                    failure(f"request body exceeds {self.max_bytes} bytes", REASONS[413]), 413
                )
                await response(scope, receive, send)
                return

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)


def _describe_validation(exc: RequestValidationError) -> tuple[int, str]:
    parts = []
    status = 422
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return 400, f"malformed JSON: {err.get('ctx', {}).get('error', 'cannot parse body')}"
        loc = [str(p) for p in err.get("loc", ())]
        if loc[:1] == ["body"]:  # where FastAPI found it; a field may be named body too
            loc = loc[1:]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return status, "; ".join(parts) or "invalid request"


def from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency handing a route what the app's lifespan keeps in ``app.state.<name>``.
    Async, so FastAPI calls it on the event loop: a plain ``def`` dependency goes through
    its thread pool on every request (3 % of the gateway's CPU, py-spy;
    docs/performance.md)."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return dependency


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as the envelope with a readable ``error``."""

    @app.exception_handler(TidingsError)
    async def _tidings(_: Request, exc: TidingsError) -> JSONResponse:
        retry_after = getattr(exc, "retry_after_header", None)
        return JSONResponse(
            failure(exc.message, REASONS.get(exc.status_code, "error")),
            exc.status_code,
            headers={"Retry-After": retry_after} if retry_after else None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, error = _describe_validation(exc)
        return JSONResponse(failure(error, REASONS[status]), status)

    async def _database(_: Request, exc: Exception) -> JSONResponse:
        # The one place a database error becomes an answer. Unreachable, hanging, a pool
        # exhausted, a pooled connection the server dropped (a restart): nothing was
        # committed that a retry with the same request_id would repeat, so 503 and
        # Retry-After. Anything else is a bug: 500, logged.
        reason = unavailable(exc)
        if reason is not None:
            log.warning("database unavailable: %s", reason)
            return JSONResponse(
                failure("database unavailable; send the request again", REASONS[503]),
                503,
                headers={"Retry-After": "1"},
            )
        log.error("database error", exc_info=exc)
        return JSONResponse(failure("internal error", REASONS.get(500, "error")), 500)

    for error_class in DRIVER_ERRORS:
        app.add_exception_handler(error_class, _database)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            failure(str(exc.detail), REASONS.get(exc.status_code, "error")),
            exc.status_code,
            headers=exc.headers,
        )


# /health runs its checks at most this often; callers in between share the last results
# (and a run under way), so a flood of /health costs no more than one a second.
HEALTH_CACHE_S = 1.0


class HealthRegistry:
    """Named checks a service registers at start; /health runs them all."""

    def __init__(self, max_age_s: float = HEALTH_CACHE_S) -> None:
        self.checks: dict[str, HealthCheck] = {}
        # Facts shown in /health that are not pass/fail (the instances a gateway sees).
        self.info: dict[str, Callable[[], Awaitable[Any]]] = {}
        self.max_age_s = max_age_s
        self.runs = 0  # how many times the checks ran (tests read it)
        self._last: tuple[float, dict[str, str]] | None = None
        self._running: asyncio.Future[dict[str, str]] | None = None

    def add(self, name: str, check: HealthCheck) -> None:
        self.checks[name] = check

    async def run(self) -> dict[str, str]:
        """The checks' results, at most ``max_age_s`` old."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.max_age_s:
            return self._last[1]
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._run_all())
        # Shielded: one caller that goes away does not cancel the run the others await.
        return await asyncio.shield(self._running)

    async def _run_all(self) -> dict[str, str]:
        self.runs += 1
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                detail = await check()
                results[name] = "ok" if detail in (None, True) else str(detail)
            except Exception as exc:  # a health check reports, never raises
                results[name] = f"error: {exc.__class__.__name__}: {exc}"[:300]
        self._last = (time.monotonic(), results)
        return results


def _bearer_is(request: Request, *secrets: str | None) -> bool:
    token = bearer(request.headers.get("authorization"))
    return token is not None and any(same_secret(token, s) for s in secrets if s)


def _secret_of(settings: TidingsSettings | None, name: str) -> str | None:
    value: SecretStr | None = getattr(settings, name, None) if settings is not None else None
    return value.get_secret_value() if value is not None else None


@asynccontextmanager
async def app_database(
    app: FastAPI, url: str, schema: str, timeouts: DbTimeouts | None = None
) -> AsyncIterator[Database]:
    """The service's store for the app's lifetime, with its /health check."""
    db = open_database(url, schema, timeouts)
    app.state.health.add("database", db.ping)
    try:
        yield db
    finally:
        await db.close()


def create_service_app(
    service: ServiceName,
    *,
    max_body_bytes: int,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    description: str = "",
    cors_origins: str = "",
    settings: TidingsSettings | None = None,
) -> FastAPI:
    """A FastAPI app with the envelope, correlation ids, body limits and /health."""
    instance_id = uuid.uuid4().hex[:12]

    @asynccontextmanager
    async def announced(app: FastAPI) -> AsyncIterator[None]:
        """The service's own lifespan, then its registration (when discovery is on)."""
        registry = None
        if settings is not None and settings.redis_url:
            registry = Registry(
                settings.redis_url, settings.cache_namespace, options=RedisOptions.of(settings)
            )
        app.state.registry = registry
        async with lifespan(app):
            heartbeat = None
            if registry is not None and settings is not None:
                heartbeat = Heartbeat(
                    registry, service, settings.advertised_url(service), settings.heartbeat_s
                )
                try:
                    await heartbeat.start()
                except DependencyUnavailable as exc:
                    log.warning("not registered for discovery: %s", exc)
                    heartbeat = None
            try:
                yield
            finally:
                if heartbeat is not None:
                    await heartbeat.stop()
                if registry is not None:
                    await registry.close()

    app = FastAPI(
        title=f"Tidings {service}",
        description=description,
        version="0.1.0",
        lifespan=announced,
    )
    app.openapi = truthful_openapi(app)  # type: ignore[method-assign]
    app.state.instance_id = instance_id
    app.state.service = service
    app.state.health = HealthRegistry()
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    origins = [o.strip() for o in cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", CORRELATION_HEADER],
        )
    app.add_middleware(CorrelationMiddleware, instance_id=instance_id, service=service)
    # The client's address (login and failed-authentication limits) from X-Forwarded-For
    # only when the peer is a trusted proxy: uvicorn's middleware, not our own parsing. In
    # the app rather than the server's config, so every way of serving it does the same.
    forwarders = settings.forwarded_allow_ips if settings is not None else ""
    trusted = [h.strip() for h in forwarders.split(",") if h.strip()]
    if trusted:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted)

    admin_key = _secret_of(settings, "admin_api_key")
    service_token = _secret_of(settings, "service_token")
    metrics_token = _secret_of(settings, "metrics_token")

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus text format (not the envelope: Prometheus reads this). Bearer
        TIDINGS_METRICS_TOKEN or the admin key: the figures name routes, queues and rates
        an outsider has no business reading."""
        if not _bearer_is(request, metrics_token, admin_key):
            raise Unauthorized("send Authorization: Bearer <TIDINGS_METRICS_TOKEN>")
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    @app.get(
        "/health",
        response_model=Envelope[dict[str, Any]],
        tags=["health"],
        # Degraded: the same body, success false, with the failing checks in ``error``.
        responses={503: {"model": Envelope[dict[str, Any]], "description": "degraded"}},
    )
    async def health(request: Request) -> JSONResponse:
        """Up or degraded, for anyone (200 or 503); the checks, instances and process
        details only for the operator's credentials (admin key, service token): they
        name internal addresses and carry raw error text."""
        checks = await request.app.state.health.run()
        healthy = all(v == "ok" for v in checks.values())
        status = "ok" if healthy else "degraded"
        data: dict[str, Any] = {"status": status}
        if _bearer_is(request, admin_key, service_token):
            info = {name: await show() for name, show in request.app.state.health.info.items()}
            data = {
                "service": service,
                "status": status,
                "pid": os.getpid(),
                "instance_id": request.app.state.instance_id,
                "checks": checks,
                **info,
            }
        body = ok(data, "healthy" if healthy else "degraded")
        if not healthy:
            body["success"] = False
            if "checks" in data:
                body["error"] = "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
            else:
                body["data"], body["error"] = None, "degraded"
        return JSONResponse(body, 200 if healthy else 503)

    return app


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
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        """The answer's ``data``; through the breaker, where unreachability counts."""
        if self.breaker is None:
            return await self._request(method, path, json=json, params=params)
        async with self.breaker.guard(lambda e: isinstance(e, DependencyUnavailable)):
            return await self._request(method, path, json=json, params=params)

    async def _request(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        url = (await self.endpoints.pick()) + path if self.endpoints is not None else path
        try:
            response = await self.client.request(method, url, json=json, params=params)
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
        await self._request("GET", "/health")

    async def aclose(self) -> None:
        await self.client.aclose()


def service_client(
    service: Literal["users", "templates"],
    settings: TidingsSettings,
    stack: AsyncExitStack,
    *,
    caller: str,
    registry: Registry | None = None,
) -> ServiceClient:
    """The one way a service looks things up in another: the service credential, a circuit
    breaker (reported in /metrics), discovery when a registry is given and no static URL is
    set; the connections close with ``stack``."""
    http = make_http_client(
        settings.url_of(service), settings.http_timeout_s, token=settings.secret("service_token")
    )
    stack.push_async_callback(http.aclose)
    failures, reset_s = {
        "users": (settings.users_breaker_failures, settings.users_breaker_reset_s),
        "templates": (settings.templates_breaker_failures, settings.templates_breaker_reset_s),
    }[service]
    breaker = CircuitBreaker(service, failure_threshold=failures, reset_timeout_s=reset_s)
    watch_breaker(caller, service, lambda: breaker.state)
    endpoints = Endpoints(
        service, settings.url_of(service), registry if settings.discovers(service) else None
    )
    return ServiceClient(service, http, breaker, endpoints)
