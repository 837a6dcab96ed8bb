"""The benchmark's SMTP sink, fed raw SMTP over a real socket: it counts every message by its
notification id, so a duplicate, a lost message and another run's message are each seen."""

from __future__ import annotations

import asyncio

import pytest

from tidings.bench.sink import Tally, ids_of, serve


def message(nid: str | None, rid: str, via_message_id: bool = False) -> bytes:
    head = [b"From: a@example.com", b"To: b@example.com", b"Subject: hi"]
    if nid is not None and via_message_id:
        head.append(f"Message-ID: <{nid}@tidings.example>".encode())
    elif nid is not None:
        head.append(f"Message-ID: <{nid}@tidings.example>".encode())
        head.append(f"x-tidings-notification-id: {nid}".encode())
    head.append(f"X-Request-ID: {rid}".encode())
    body = b"Hello\r\n..a dot-stuffed line\r\n"
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@pytest.mark.timeout(20)
async def test_sink_counts_a_duplicate_a_lost_and_an_unexpected_message() -> None:
    tally = Tally()
    server = await serve(tally.arrive)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await reader.readline()).startswith(b"220")
        writer.write(b"EHLO bench\r\n")
        lines = [await reader.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(await reader.readline())
        assert any(b"PIPELINING" in line for line in lines)
        sent = [
            message("n-1", "r-1"),
            message("n-1", "r-1"),  # the same notification again: a duplicate
            message("n-2", "r-2", via_message_id=True),
            message("n-other", "another run's"),
            message(None, "r-none"),
        ]
        for raw in sent:
            # Pipelined, as RFC 2920 allows: MAIL and RCPT together, then DATA.
            writer.write(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            for _ in range(3):
                assert (await reader.readline())[:3] in (b"250", b"354")
            writer.write(raw + b"\r\n.\r\n")
            assert (await reader.readline()).startswith(b"250")
        writer.write(b"QUIT\r\n")
        assert (await reader.readline()).startswith(b"221")
        assert await reader.read() == b""
        writer.close()
    finally:
        server.close()
    # n-3 was accepted by the gateway (expected) and never arrived: lost.
    counts = tally.count({"n-1", "n-2", "n-3"})
    assert (counts.delivered, counts.lost, counts.duplicated) == (2, 1, 1)
    assert counts.unexpected == 2  # n-other and the message without an id
    assert tally.request_of["n-2"] == "r-2" and tally.messages == 5


def test_ids_are_read_from_the_header_block_only() -> None:
    raw = message("n-9", "r-9") + b"X-Request-ID: not a header\r\n"
    assert ids_of(raw) == ("n-9", "r-9")
    assert ids_of(b"Subject: x\r\n\r\nbody") == ("-", "-")
