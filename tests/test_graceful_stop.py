"""A service stops after a signal even with a request that never ends: requests in flight
get TIDINGS_SHUTDOWN_GRACE_S, then are cancelled and the app's own shutdown runs (uvicorn's
default waited for ever: a templates process kept running, its supervisor gone, for as long
as nobody killed it); a second signal stops the waiting at once."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from tests.helpers import free_port
from tidings.runner import service_server

GRACE_S = 1.0


def hanging_app(entered: asyncio.Event, cancelled: asyncio.Event, shut: asyncio.Event) -> FastAPI:
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        shut.set()  # the app's own shutdown ran

    app = FastAPI(lifespan=lifespan)

    @app.get("/hang")
    async def hang() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()  # never set: a request that never ends
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return app


async def test_a_request_that_never_ends_does_not_hold_the_stop() -> None:
    entered, cancelled, shut = asyncio.Event(), asyncio.Event(), asyncio.Event()
    port = free_port()
    server = service_server(
        hanging_app(entered, cancelled, shut), "127.0.0.1", port, grace_s=GRACE_S
    )
    serving = asyncio.create_task(server.serve())
    await asyncio.wait_for(server.listening.wait(), 30)
    async with httpx.AsyncClient(timeout=60) as client:
        request = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/hang"))
        await asyncio.wait_for(entered.wait(), 30)
        server.should_exit = True  # what the signal handler does
        # Bounded by the grace (and uvicorn's 0.1 s polls), not by the request.
        await asyncio.wait_for(serving, 30)
        assert cancelled.is_set() and shut.is_set()
        request.cancel()
