"""A TCP proxy between Tidings and one dependency (PostgreSQL, Redis, RabbitMQ, SMTP), so a
fault test can cut, stall or restore that dependency for the processes behind the proxy
without touching the machine's own server, which every other test is using.

Written here instead of Toxiproxy: Toxiproxy is a Go binary outside the package registries
this project installs from, and the three faults the suite needs fit in a page of asyncio.

* ``cut()``: every open connection is closed and new ones are refused (the listening socket
  is closed, so a connect gets ECONNREFUSED at once), as when the server is down.
* ``stall()``: connections stay open and new ones are accepted, but no byte moves either
  way, as when the server's host drops packets (a client sees a hang, not an error).
* ``restore()``: back to forwarding on the same port; stalled bytes are then delivered.

Only 127.0.0.1. Use it as ``async with TcpProxy(port) as proxy: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

_CHUNK = 65536


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.connections = 0  # accepted since start
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._pipes: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def url(self, url: str) -> str:
        """``url`` with its ``host:port`` of the target replaced by the proxy's."""
        for host in (self.target_host, "localhost"):
            old = f"{host}:{self.target_port}"
            if old in url:
                return url.replace(old, f"127.0.0.1:{self.port}", 1)
        raise ValueError(f"{url!r} does not point at port {self.target_port}")

    async def start(self) -> None:
        if self.port == 0:
            # Pick a free port once, so restore() listens where the clients already point.
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def cut(self) -> None:
        """Down: refuse new connections, reset the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._drop_all()

    def stall(self) -> None:
        """Hang: accept, hold, forward nothing."""
        self._flowing.clear()

    async def restore(self) -> None:
        self._flowing.set()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()
        for task in list(self._pipes):
            task.cancel()
        if self._pipes:
            await asyncio.gather(*self._pipes, return_exceptions=True)

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            transport = writer.transport
            with contextlib.suppress(Exception):
                # An abort is a RST, as a dead server's host gives; close() would be a FIN.
                transport.abort()
        self._writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(client_w)
        await self._flowing.wait()
        try:
            server_r, server_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_w.transport.abort()
            self._writers.discard(client_w)
            return
        self._writers.add(server_w)
        pipes = [
            asyncio.create_task(self._pipe(client_r, server_w)),
            asyncio.create_task(self._pipe(server_r, client_w)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._pipes.difference_update(pipes)
            for writer in (client_w, server_w):
                self._writers.discard(writer)
                with contextlib.suppress(Exception):
                    writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    return
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
