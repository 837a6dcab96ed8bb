"""Small helpers the tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and give a client that talks to it in process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def assert_envelope(body: dict, *, success: bool) -> None:
    """Every answer is the envelope, with exactly its five keys."""
    assert set(body) == {"success", "data", "error", "message", "meta"}, body
    assert body["success"] is success, body
    assert isinstance(body["message"], str)
    if success:
        assert body["error"] is None
    else:
        assert isinstance(body["error"], str) and body["error"], body
        assert body["data"] is None
