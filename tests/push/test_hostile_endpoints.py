"""Push endpoints are chosen by users, so their servers may be hostile: one that trickles its
answer a byte at a time (every read within the per-read timeout) is cut at the call's
deadline, and one that answers with an endless body is read no further than the cap."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from tests.push.support import CONTENT, standalone_sender, webpush_device
from tidings.core.errors import TransientError
from tidings.push_worker.senders import CallLimits, bounded_post

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class HostilePeer:
    """A raw HTTP/1.1 server on 127.0.0.1 that reads a request and answers with ``answer``;
    ``sent`` counts the body bytes it managed to write."""

    answer: Answer
    sent: int = 0
    server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            await self.answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the sender hung up: what these tests want
        finally:
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/push/x"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


PeerFactory = Callable[[Answer], Awaitable[tuple[HostilePeer, str]]]


@pytest.fixture
async def peer_factory() -> AsyncIterator[PeerFactory]:
    peers: list[HostilePeer] = []

    async def make(answer: Answer) -> tuple[HostilePeer, str]:
        peer = HostilePeer(answer)
        peers.append(peer)
        return peer, await peer.start()

    yield make
    for peer in peers:
        await peer.stop()


TRICKLE_BYTES = 40
TRICKLE_GAP_S = 0.1  # 4 s in all, each byte well within the 5 s per-read timeout


async def test_a_trickling_push_service_is_cut_at_the_deadline(peer_factory: PeerFactory) -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % TRICKLE_BYTES)
        for _ in range(TRICKLE_BYTES):
            await writer.drain()
            await asyncio.sleep(TRICKLE_GAP_S)  # the peer's misbehaviour, not a test wait
            writer.write(b"x")

    _, endpoint = await peer_factory(trickle)
    sender = standalone_sender(push_deadline_s=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(TransientError, match="did not answer within 1 s"):
            await sender.send(webpush_device(endpoint), CONTENT)
    finally:
        await sender.close()
    # Cut at the deadline, not after the whole trickle.
    assert loop.time() - started < TRICKLE_BYTES * TRICKLE_GAP_S * 0.75


ENDLESS_CHUNK = b"y" * 65_536
ENDLESS_CHUNKS = 1_024  # 64 MiB, if anyone read it all


async def test_an_endless_answer_is_read_no_further_than_the_cap(peer_factory: PeerFactory) -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % (65_536 * 1024))
        for _ in range(ENDLESS_CHUNKS):
            writer.write(ENDLESS_CHUNK)
            await writer.drain()
            peer.sent += len(ENDLESS_CHUNK)

    peer, endpoint = await peer_factory(endless)
    sender = standalone_sender(push_max_response_bytes=4096)
    try:
        assert await sender.send(webpush_device(endpoint), CONTENT) == "webpush 201 accepted"
    finally:
        await sender.close()
    async with httpx.AsyncClient() as http:
        answer = await bounded_post(http, endpoint, CallLimits(5.0, 4096), content=b"{}")
    assert answer.status_code == 201 and len(answer.content) == 4096
    # What the server could push into socket buffers before the sender hung up, no more.
    assert peer.sent < ENDLESS_CHUNKS * len(ENDLESS_CHUNK) // 4


async def test_an_encoded_answer_is_not_inflated(peer_factory: PeerFactory) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)

    async def compressed(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Encoding: gzip\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(bomb)
        )
        writer.write(bomb)
        await writer.drain()

    _, endpoint = await peer_factory(compressed)
    async with httpx.AsyncClient() as http:
        answer = await bounded_post(http, endpoint, CallLimits(5.0, 65_536), content=b"{}")
    assert answer.status_code == 400 and answer.content == b""
