"""The benchmark's HTTP load generator against a raw server that answers pipelined requests
in one write: answers come back in order, with a Content-Length or a chunked body, and a
closed connection answers what was in flight with status 0."""

from __future__ import annotations

import asyncio

import pytest

from tidings.bench.load import Load, parse_response, request_bytes

FIRST = b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\n\r\nfirst"
SECOND = (
    b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n"
)


@pytest.mark.timeout(20)
async def test_pipelined_answers_arrive_in_order_and_a_closed_connection_answers_0() -> None:
    got_two = asyncio.Event()
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while len(seen) < 2:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            seen.append(await reader.readexactly(length))
        got_two.set()
        writer.write(FIRST + SECOND)  # both answers in one write
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the third request: closed without an answer
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    answers: list[tuple[int, bytes]] = []
    all_three = asyncio.Event()

    def answer(status: int, body: bytes) -> None:
        answers.append((status, body))
        if len(answers) == 3:
            all_three.set()

    load = await Load(f"http://127.0.0.1:{port}", connections=1).open()
    try:
        for body in (b'{"a":1}', b'{"b":2}'):  # two in flight on one connection: pipelined
            load.send(request_bytes(f"127.0.0.1:{port}", "/x", "Bearer k", body), answer)
        await asyncio.wait_for(got_two.wait(), 10)
        load.send(request_bytes(f"127.0.0.1:{port}", "/x", "Bearer k", b"{}"), answer)
        await asyncio.wait_for(all_three.wait(), 10)
    finally:
        load.close()
        server.close()
    assert seen == [b'{"a":1}', b'{"b":2}']
    assert answers[:2] == [(202, b"first"), (409, b"second")]
    assert answers[2][0] == 0


def test_an_incomplete_answer_waits_for_more() -> None:
    assert parse_response(bytearray(FIRST[:-1])) is None
    assert parse_response(bytearray(SECOND[:-2])) is None
    assert parse_response(bytearray(FIRST + b"HTTP")) == (202, b"first", len(FIRST))
