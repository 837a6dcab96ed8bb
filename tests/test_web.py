"""The app factory's cross-cutting parts: CORS when configured, none otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from tidings.core.web import create_service_app


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
