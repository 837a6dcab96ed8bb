"""The app factory: a service's FastAPI app with the envelope, correlation ids, body limits,
/health, /metrics and its registration for discovery."""

from __future__ import annotations

import inspect
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tidings.core.auth import bearer, same_secret
from tidings.core.cache import RedisOptions
from tidings.core.db import Database, DbTimeouts, open_database
from tidings.core.discovery import Heartbeat, Registry
from tidings.core.envelope import Envelope, ok
from tidings.core.errors import DependencyUnavailable, Unauthorized
from tidings.core.logs import CORRELATION_HEADER
from tidings.core.metrics import exposition
from tidings.core.openapi import truthful_openapi
from tidings.core.settings import SecretName, ServiceName, TidingsSettings
from tidings.core.web.handlers import install_error_handlers
from tidings.core.web.health import HealthRegistry
from tidings.core.web.middleware import ServiceMiddleware

log = logging.getLogger(__name__)


def from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency handing a route what the app's lifespan keeps in ``app.state.<name>``.
    Async, so FastAPI calls it on the event loop: a plain ``def`` dependency goes through
    its thread pool on every request (3 % of the gateway's CPU, py-spy;
    docs/performance.md)."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return dependency


def _bearer_is(request: Request, *secrets: str | None) -> bool:
    token = bearer(request.headers.get("authorization"))
    return token is not None and any(same_secret(token, s) for s in secrets if s)


def _secret_of(settings: TidingsSettings | None, name: SecretName) -> str | None:
    return settings.secret_or_none(name) if settings is not None else None


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


# FastAPI from 0.16x instruments every request for OpenTelemetry unless told not to: it looks
# the tracer provider up per request (os.environ reads, about 3 % of the gateway's CPU in the
# profile, docs/performance.md). Tidings configures no OpenTelemetry (its metrics are
# Prometheus', its traces the correlation id in the logs), so it is off; an older FastAPI
# without the option has nothing to turn off.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


class ServiceApp(FastAPI):
    """FastAPI with one layer between the server and the router, not six: ServiceMiddleware
    (innermost of the added middlewares, as create_service_app adds it) given the app's
    exception handlers (core.web.middleware). FastAPI's own layers would be Starlette's
    ServerErrorMiddleware (its 500 is ServiceMiddleware's already), the telemetry and app
    body limit layers (off: no OpenTelemetry, no FastAPI ``max_body_size``; ours is
    ServiceMiddleware's), ExceptionMiddleware and AsyncExitStackMiddleware (done by
    ServiceMiddleware). Each was a coroutine and a wrapped ``send`` per request
    (docs/performance.md). An app with debug, a 500 handler or a FastAPI body limit gets
    FastAPI's stack, unchanged."""

    def build_middleware_stack(self) -> ASGIApp:
        added = list(self.user_middleware)
        handlers = dict(self.exception_handlers)
        if (
            not added
            or added[-1].cls is not ServiceMiddleware
            or self.debug
            or getattr(self, "max_body_size", None) is not None
            or 500 in handlers
            or Exception in handlers
        ):
            return super().build_middleware_stack()
        # Starlette's own sorting of the handlers (by class, by status; its defaults first).
        sorted_ = ExceptionMiddleware(self.router, handlers=handlers)
        inner = added.pop()
        assert not inner.args, "create_service_app adds ServiceMiddleware by keyword"
        options: dict[str, Any] = dict(inner.kwargs)
        options["handlers"] = (sorted_._exception_handlers, sorted_._status_handlers)
        app: ASGIApp = ServiceMiddleware(self.router, **options)
        for cls, args, kwargs in reversed(added):
            app = cls(app, *args, **kwargs)
        return app


def create_service_app(
    service: ServiceName,
    *,
    max_body_bytes: int,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    description: str = "",
    cors_origins: str = "",
    settings: TidingsSettings | None = None,
    access_log_sample: int = 1,
) -> FastAPI:
    """A FastAPI app with the envelope, correlation ids, body limits and /health.
    ``access_log_sample``: one 2xx answer in this many is logged, per route (core.web's
    ServiceMiddleware; 1 logs all, 0 none); other answers always are."""
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

    app = ServiceApp(
        title=f"Tidings {service}",
        description=description,
        version="0.1.0",
        lifespan=announced,
        **_NO_TELEMETRY,
    )
    app.openapi = truthful_openapi(app)  # type: ignore[method-assign]
    app.state.instance_id = instance_id
    app.state.service = service
    app.state.health = HealthRegistry()
    install_error_handlers(app)
    # One middleware on the hot path (docs/performance.md): the correlation id, the request's
    # log line, the body limit and the exception handlers in one layer (ServiceApp). Added
    # first, so it stays the innermost.
    app.add_middleware(
        ServiceMiddleware,
        instance_id=instance_id,
        service=service,
        max_bytes=max_body_bytes,
        access_log_sample=access_log_sample,
    )
    # CORS outside it: every answer the app gives, a 413 included, gets CORS's headers as
    # before; a preflight CORS answers itself (no script can read its headers) has no
    # correlation id or log line.
    origins = [o.strip() for o in cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", CORRELATION_HEADER],
        )
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
