"""A Starlette app served by uvicorn on 127.0.0.1, which can be stopped and started again on
the same port (a peer that refuses connections for a while)."""

from __future__ import annotations

import asyncio

import uvicorn
from starlette.applications import Starlette

from tests.helpers import free_port
from tidings.runner import Server


class PeerServer:
    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.port = free_port()
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off"
        )
        self._server = Server(config)
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(10):
            while not self._server.started:  # uvicorn sets it once the socket listens
                if self._task.done():
                    await self._task
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None
