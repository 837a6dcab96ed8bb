"""The app factory's cross-cutting parts: CORS when configured, none otherwise; the request
log line, sampled for 2xx answers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from tidings.core.errors import NotFound
from tidings.core.web import ServiceMiddleware, create_service_app


@asynccontextmanager
async def nothing(app: FastAPI) -> AsyncIterator[None]:
    yield


async def preflight(app: FastAPI, origin: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.options(
            "/health",
            headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
        )


async def test_cors_allows_only_the_configured_origins() -> None:
    app = create_service_app(
        "users", max_body_bytes=1024, lifespan=nothing, cors_origins="https://app.example"
    )
    allowed = await preflight(app, "https://app.example")
    assert allowed.headers.get("access-control-allow-origin") == "https://app.example"
    other = await preflight(app, "https://evil.example")
    assert "access-control-allow-origin" not in other.headers


async def test_no_cors_by_default() -> None:
    app = create_service_app("users", max_body_bytes=1024, lifespan=nothing)
    answer = await preflight(app, "https://app.example")
    assert "access-control-allow-origin" not in answer.headers


async def test_2xx_request_lines_are_sampled_per_route_others_all_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One middleware logs the request lines: of the 2xx answers one in
    ``access_log_sample`` per route and method (the first included), every other answer."""
    app = create_service_app("users", max_body_bytes=1024, lifespan=nothing, access_log_sample=3)

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.INFO, logger="tidings.core.web.middleware"):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(7):
                answer = await client.get("/ping")
                assert answer.status_code == 200 and answer.headers["x-correlation-id"]
            for _ in range(2):
                assert (await client.get("/nowhere")).status_code == 404
            big = await client.post("/ping", content=b"x" * 2000)
            assert big.status_code == 413 and big.json()["message"] == "request body too large"
    lines = [r.getMessage() for r in caplog.records if r.name == "tidings.core.web.middleware"]
    assert lines.count("GET /ping 200") == 3, lines  # the 1st, 4th and 7th
    assert lines.count("GET /nowhere 404") == 2, lines
    assert lines.count("POST /ping 413") == 1, lines


async def test_fastapi_opentelemetry_hooks_are_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tidings configures no OpenTelemetry: FastAPI's own hooks, which look the tracer
    provider up on every request, are off (core.web.app)."""
    trace = pytest.importorskip("opentelemetry.trace")
    asked: list[int] = []
    real = trace.get_tracer_provider

    def counted() -> object:
        asked.append(1)
        return real()

    monkeypatch.setattr(trace, "get_tracer_provider", counted)
    app = create_service_app("users", max_body_bytes=1024, lifespan=nothing)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/health")
    assert asked == []


async def test_one_layer_between_the_server_and_the_router() -> None:
    """ServiceMiddleware is the whole stack (core.web.app's ServiceApp): FastAPI's own layers
    (server errors, telemetry, body limit, exception handlers, exit stack) are not run, and
    what they did still happens: errors of the router and of routes in the envelope, with the
    correlation id; an unhandled one a 500 envelope; a route's exit stack in place."""
    app = create_service_app("users", max_body_bytes=1024, lifespan=nothing)

    @app.get("/missing")
    async def missing() -> None:
        raise NotFound("no such thing")

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    stack = app.build_middleware_stack()
    assert isinstance(stack, ServiceMiddleware) and stack.app is app.router, stack
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/ping")).json() == {"pong": "yes"}
        for path, method, status in [
            ("/missing", "GET", 404),
            ("/nowhere", "GET", 404),
            ("/ping", "DELETE", 405),
            ("/broken", "GET", 500),
        ]:
            answer = await client.request(method, path)
            assert answer.status_code == status, (path, answer.text)
            assert answer.json()["success"] is False, answer.text
            assert answer.headers["x-correlation-id"], path
        assert (await client.delete("/ping")).headers["allow"] == "GET"
