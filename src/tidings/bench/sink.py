"""The benchmark's SMTP sink: a raw asyncio protocol, not aiosmtpd, so that receiving a
message costs a small fraction of what sending it cost Tidings.

It speaks just enough SMTP for a client (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, with
PIPELINING advertised), reads each message's header block only, and records the message's
notification id (``X-Tidings-Notification-ID``, else the local part of ``Message-ID``), its
``X-Request-ID`` and the arrival time in a :class:`Tally`, which counts what was lost,
duplicated or unexpected against the notifications the gateway accepted.

``python -m tidings.bench.sink --port P`` runs it as a process of its own (so that its CPU is
measured apart from the load generator's): it prints ``port N`` once listening, then one line
``<notification id> <request id> <perf_counter>`` per message, in batches. ``perf_counter`` is
``CLOCK_MONOTONIC`` on Linux, one clock for every process of the machine, so arrival times
compare with the load generator's send times."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

END_OF_DATA = b"\r\n.\r\n"
NO_ID = "-"
GREETING = b"220 tidings-bench ESMTP\r\n"
EHLO = b"250-tidings-bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n"
OK = b"250 OK\r\n"
Arrival = Callable[[str, str, float], None]
T = TypeVar("T")


@dataclass
class Counts:
    expected: int
    delivered: int
    lost: int
    duplicated: int
    unexpected: int


@dataclass
class Tally:
    """Arrivals by notification id. ``count(expected)`` compares them with the notification
    ids the gateway answered 202 for: lost (expected, never arrived), duplicated (arrivals
    beyond the first), unexpected (a message for no expected notification: another run's,
    one whose request was not answered 202, or one without an id)."""

    arrivals: dict[str, list[float]] = field(default_factory=dict)
    request_of: dict[str, str] = field(default_factory=dict)
    messages: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    awaiting: set[str] = field(default_factory=set)  # expected ids not arrived yet

    def arrive(self, notification_id: str, request_id: str, t: float) -> None:
        self.messages += 1
        times = self.arrivals.get(notification_id)
        if times is None:
            self.arrivals[notification_id] = [t]
            self.request_of[notification_id] = request_id
            self.awaiting.discard(notification_id)
            self.changed.set()
        else:
            times.append(t)

    def count(self, expected: Collection[str]) -> Counts:
        delivered = sum(1 for nid in expected if nid in self.arrivals)
        return Counts(
            expected=len(expected),
            delivered=delivered,
            lost=len(expected) - delivered,
            duplicated=sum(len(self.arrivals[nid]) - 1 for nid in expected if nid in self.arrivals),
            unexpected=sum(len(t) for nid, t in self.arrivals.items() if nid not in expected),
        )


def ids_of(message: bytes) -> tuple[str, str]:
    """(notification id, request id) from a message's header block; ``-`` for a missing one."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[:end]
    lower = head.lower()
    nid = _header(head, lower, b"x-tidings-notification-id:")
    if nid == NO_ID:
        local = _header(head, lower, b"message-id:").strip("<>").partition("@")[0]
        nid = local if local and local != NO_ID else NO_ID
    return nid, _header(head, lower, b"x-request-id:")


def _header(head: bytes, lower: bytes, name: bytes) -> str:
    """The first header ``name`` (lower case, with its colon), found in ``lower`` (the
    header block in lower case) and read from ``head``; unfolded headers only."""
    at = lower.find(b"\n" + name)
    at = at + 1 if at >= 0 else (0 if lower.startswith(name) else -1)
    if at < 0:
        return NO_ID
    end = head.find(b"\r\n", at)
    value = head[at + len(name) : end if end >= 0 else len(head)].strip()
    return value.decode("ascii", "replace") or NO_ID


class SmtpSink(asyncio.Protocol):
    """One SMTP connection. Commands may come pipelined; every complete line is answered in
    order, and the answers of one read go out in one write."""

    def __init__(self, on_message: Arrival) -> None:
        self.on_message = on_message
        self.buffer = bytearray()
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.write(GREETING)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        scanned = len(buf)
        buf += data
        out: list[bytes] = []
        start = 0
        while start < len(buf):
            if self.in_data:
                # The data may be empty: its end is then ".\r\n" right after "DATA\r\n".
                if buf.startswith(b".\r\n", start):
                    end, message = start, b""
                else:
                    end = buf.find(END_OF_DATA, max(start, scanned - 4))
                    if end < 0:
                        break
                    message = bytes(buf[start:end])
                    end += 2
                self.on_message(*ids_of(message), time.perf_counter())
                self.in_data = False
                start = end + 3
                out.append(OK)
                continue
            eol = buf.find(b"\r\n", start)
            if eol < 0:
                break
            reply = self.command(bytes(buf[start : start + 4]).upper())
            start = eol + 2
            out.append(reply)
            if reply.startswith(b"221"):
                break
        del buf[:start]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
            if out[-1].startswith(b"221"):
                self.transport.close()

    def command(self, verb: bytes) -> bytes:
        if verb == b"EHLO":
            return EHLO
        if verb == b"DATA":
            self.in_data = True
            return b"354 end with <CRLF>.<CRLF>\r\n"
        if verb == b"QUIT":
            return b"221 bye\r\n"
        if verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            return OK
        return b"502 not implemented\r\n"


async def serve(on_message: Arrival, port: int = 0) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SmtpSink(on_message), "127.0.0.1", port)


async def serve_reporting(
    start: Callable[[Callable[[str], None]], Awaitable[asyncio.Server]],
) -> None:
    """A bench server as a process of its own: ``start(emit)`` serves and calls ``emit`` with a
    line per event; the lines go to stdout, a batch per 20 ms at most, after ``port N`` once
    listening; done when stdin is closed (the bench is done)."""
    loop = asyncio.get_running_loop()
    pending: list[str] = []
    out = sys.stdout

    def flush() -> None:
        out.write("".join(pending))
        out.flush()
        pending.clear()

    def emit(line: str) -> None:
        if not pending:
            loop.call_later(0.02, flush)
        pending.append(line)

    server = await start(emit)
    out.write(f"port {server.sockets[0].getsockname()[1]}\n")
    out.flush()
    stop = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), stop.set)
    await stop.wait()
    server.close()
    if pending:
        flush()


async def _main(port: int) -> None:
    def on_message(emit: Callable[[str], None]) -> Arrival:
        return lambda nid, rid, t: emit(
            f"{nid.replace(' ', '_')} {rid.replace(chr(10), ' ')} {t!r}\n"
        )

    await serve_reporting(lambda emit: serve(on_message(emit), port))


def main() -> None:
    parser = argparse.ArgumentParser(description="the benchmark's SMTP sink")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        on_uvloop(_main(args.port))


def on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (the bench's processes, like the services;
    ``tidings.runner`` is not imported: it imports every service)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":
    main()
