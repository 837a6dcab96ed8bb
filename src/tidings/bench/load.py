"""The benchmark's load generator: HTTP/1.1 on raw asyncio protocols, keep-alive connections
that pipeline when more requests are in flight than there are connections, and answers handed
to callbacks instead of tasks, so that sending a request costs a small fraction of what
accepting it costs the gateway.

Only what the gateway answers is parsed: a status line, ``Content-Length`` (or a chunked body)
and the body's bytes. Everything else of HTTP a general client needs (redirects, proxies,
TLS, compression) the bench does not."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from typing import cast
from urllib.parse import urlsplit

Answer = Callable[[int, bytes], None]  # (HTTP status, body); status 0: no answer (the error)
DISCONNECTED = b"connection lost"


def request_bytes(host: str, path: str, authorization: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1") + body


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; answers come back in the order the requests were written."""

    def __init__(self, on_idle: Callable[[HttpConnection], None]) -> None:
        self.on_idle = on_idle
        self.waiting: deque[Answer] = deque()
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.alive = False
        self.listed_idle = False  # in its Load's idle queue
        self.replaced = False  # dead, and a new connection is being made in its place

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.alive = True

    def send(self, request: bytes, answer: Answer) -> None:
        assert self.transport is not None
        self.waiting.append(answer)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while self.waiting:
            parsed = parse_response(buf)
            if parsed is None:
                break
            status, body, used = parsed
            del buf[:used]
            self.waiting.popleft()(status, body)
        if not self.waiting:
            self.on_idle(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        while self.waiting:
            self.waiting.popleft()(0, DISCONNECTED)


def parse_response(buf: bytearray) -> tuple[int, bytes, int] | None:
    """(status, body, bytes used) of the first complete response in ``buf``, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    status = int(buf[9:12])
    head = bytes(buf[:end]).lower()
    start = end + 4
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        if len(buf) < start + length:
            return None
        return status, bytes(buf[start : start + length]), start + length
    if b"\r\ntransfer-encoding: chunked" in head:
        return _chunked(buf, status, start)
    return status, b"", start  # no body (204, 304)


def _chunked(buf: bytearray, status: int, start: int) -> tuple[int, bytes, int] | None:
    body = bytearray()
    at = start
    while True:
        eol = buf.find(b"\r\n", at)
        if eol < 0:
            return None
        size = int(bytes(buf[at:eol]).split(b";")[0], 16)
        if size == 0:
            last = buf.find(b"\r\n\r\n", eol)
            return None if last < 0 else (status, bytes(body), last + 4)
        if len(buf) < eol + 2 + size + 2:
            return None
        body += buf[eol + 2 : eol + 2 + size]
        at = eol + 2 + size + 2


class Load:
    """``connections`` keep-alive connections to one HTTP server. A request goes on an idle
    connection if there is one, else pipelined on the next connection in turn."""

    def __init__(self, url: str, connections: int) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.host_header = parts.netloc
        self.size = max(1, connections)
        self.connections: list[HttpConnection] = []
        self.idle: deque[HttpConnection] = deque()
        self.turn: Iterator[HttpConnection] = iter(())
        self.tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> Load:
        loop = asyncio.get_running_loop()
        for _ in range(self.size):
            _, conn = await loop.create_connection(
                lambda: HttpConnection(self._idle), self.host, self.port
            )
            self.connections.append(conn)
            self._idle(conn)
        self.turn = itertools.cycle(self.connections)
        return self

    def _idle(self, conn: HttpConnection) -> None:
        if conn.alive and not conn.listed_idle:
            conn.listed_idle = True
            self.idle.append(conn)

    def send(self, request: bytes, answer: Answer) -> None:
        if self.idle:
            conn = self.idle.popleft()
            conn.listed_idle = False
        else:
            conn = next(self.turn)
        if not conn.alive:  # closed by the server (after an error answer): answer as such
            loop = asyncio.get_running_loop()
            loop.call_soon(answer, 0, DISCONNECTED)  # not at once: no recursion into send()
            if not conn.replaced:
                conn.replaced = True
                self.tasks.add(task := loop.create_task(self._replace(conn)))
                task.add_done_callback(self.tasks.discard)
            return
        conn.send(request, answer)

    async def _replace(self, dead: HttpConnection) -> None:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: HttpConnection(self._idle), self.host, self.port
        )
        if dead in self.connections:
            self.connections[self.connections.index(dead)] = conn
            self.turn = itertools.cycle(self.connections)
            self._idle(conn)

    def close(self) -> None:
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.close()
