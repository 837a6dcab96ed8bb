"""The webhooks sender against hostile or misplaced receivers, with no worker around it:
no redirect followed, the answer read no further than the cap and never inflated, a trickling
answer cut at the deadline, the certificate verified, and loopback refused at send time
without the development flag (a literal, a name resolving to it, plain http)."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ssl
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.email.test_smtp_starttls import _self_signed
from tests.push.test_hostile_endpoints import PeerFactory, peer_factory
from tidings.webhooks.attempts import Claimed, Outcome
from tidings.webhooks.secrets import SecretBox, new_secret
from tidings.webhooks.sender import Sender

__all__ = ["peer_factory"]  # the push tests' raw HTTP peer, as a fixture here too

SECRET = new_secret()
BOX = SecretBox("test-sender")
BODY = b'{"type":"notification.delivered","data":{"sequence":1}}'


def message() -> Claimed:
    now = dt.datetime.now(dt.UTC)
    return Claimed(1, uuid.uuid4(), f"msg_{uuid.uuid4().hex}", BODY, 0, now, now)


def endpoint(url: str) -> SimpleNamespace:
    return SimpleNamespace(
        url=url, secret=BOX.seal(SECRET), previous_secret=None, previous_until=None
    )


async def send(url: str, *, allow_insecure: bool = True, **kwargs: object) -> Outcome:
    options: dict[str, object] = {"timeout_s": 5.0, "response_bytes": 4096, **kwargs}
    sender = Sender(BOX, allow_insecure=allow_insecure, **options)  # type: ignore[arg-type]
    try:
        return await sender.send(message(), endpoint(url))
    finally:
        await sender.close()


def answering(raw: bytes, seen: list[bytes]) -> object:
    async def answer(writer: asyncio.StreamWriter) -> None:
        seen.append(raw)
        writer.write(raw)
        await writer.drain()

    return answer


async def test_a_signed_request_and_its_answer(peer_factory: PeerFactory) -> None:
    heads: list[bytes] = []

    async def ok(writer: asyncio.StreamWriter) -> None:
        heads.append(b"")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    _, url = await peer_factory(ok)
    outcome = await send(url)
    assert (outcome.status_code, outcome.error, outcome.excerpt) == (200, None, "ok")
    assert heads


async def test_a_redirect_is_an_answer_not_followed(peer_factory: PeerFactory) -> None:
    elsewhere: list[bytes] = []
    _, target = await peer_factory(answering(b"HTTP/1.1 200 OK\r\n\r\n", elsewhere))
    redirect = b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % target.encode()
    _, url = await peer_factory(answering(redirect, []))
    outcome = await send(url)
    assert outcome.status_code == 302 and outcome.error is None
    assert elsewhere == [], "the redirect's target was never asked"


async def test_the_answer_is_read_no_further_than_the_cap(peer_factory: PeerFactory) -> None:
    chunk = b"y" * 65_536

    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(chunk) * 1024))
        for _ in range(1024):
            writer.write(chunk)
            await writer.drain()
            peer.sent += len(chunk)

    peer, url = await peer_factory(endless)
    outcome = await send(url, response_bytes=100)
    assert outcome.status_code == 200 and outcome.excerpt == "y" * 100
    assert peer.sent < len(chunk) * 1024 // 4, "the sender hung up"


async def test_an_encoded_answer_is_dropped_not_inflated(peer_factory: PeerFactory) -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)
    head = b"HTTP/1.1 400 Bad Request\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
    _, url = await peer_factory(answering(head % len(bomb) + bomb, []))
    outcome = await send(url)
    assert outcome.status_code == 400 and outcome.excerpt == ""


async def test_a_trickling_answer_is_cut_at_the_deadline(peer_factory: PeerFactory) -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n")
        for _ in range(400):
            await writer.drain()
            await asyncio.sleep(0.1)  # the peer's misbehaviour, not a test wait
            writer.write(b"x")

    _, url = await peer_factory(trickle)
    async with asyncio.timeout(30):  # the trickle alone would take 40 s
        outcome = await send(url, timeout_s=1.0)
    assert outcome.status_code is None and outcome.error == "timeout: no answer within 1 s"


async def test_the_certificate_is_verified(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        outcome = await send(f"https://127.0.0.1:{port}/hook")
    finally:
        server.close()
    assert outcome.status_code is None and "certificate" in (outcome.error or "").lower()
    assert seen in ([], [b""]), "no request was sent over the unverified connection"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:{port}/hook", "https://127.0.0.1:{port}/hook", "https://[::1]:{port}/h"],
)
async def test_loopback_is_refused_at_send_time_without_the_flag(
    peer_factory: PeerFactory, url: str
) -> None:
    seen: list[bytes] = []
    _, allowed = await peer_factory(answering(b"HTTP/1.1 204 No Content\r\n\r\n", seen))
    port = int(allowed.rsplit(":", 1)[1].split("/", 1)[0])
    outcome = await send(url.format(port=port), allow_insecure=False)
    assert outcome.status_code is None and (outcome.error or "").startswith("refused:")
    assert "non-public" in (outcome.error or "") and seen == []


async def test_a_name_resolving_to_loopback_is_refused_without_the_flag(
    peer_factory: PeerFactory,
) -> None:
    seen: list[bytes] = []
    _, url = await peer_factory(answering(b"HTTP/1.1 204 No Content\r\n\r\n", seen))
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])

    async def to_loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    named = f"https://hooks.example.test:{port}/hook"
    outcome = await send(named, allow_insecure=False, resolve=to_loopback)
    assert outcome.error is not None and outcome.error.startswith("refused:")
    assert "non-public addresses 127.0.0.1" in outcome.error and seen == []
    # The same peer with the development flag: reached (plain http to loopback).
    assert (await send(url, allow_insecure=True)).status_code == 204 and len(seen) == 1
