"""The benchmark's webhook receiver: a raw asyncio HTTP/1.1 server (keep-alive, no framework),
so that receiving an event costs a small fraction of what sending it cost Tidings.

It reads each request's ``webhook-id`` header and, from the body, the event's type and
notification id, and answers ``204`` (or, ``--down``, ``503`` to every request: a receiver
that is down, so the worker retries and its breaker opens; or, ``--slow MS``, ``204`` each
after MS milliseconds: a slow receiver, holding the worker's slots for that endpoint). It
does not verify signatures: the webhooks tests do (tests/webhooks/receiver.py); the bench
counts.

``python -m tidings.bench.hooks --port P [--down | --slow MS]`` runs it as a process of its
own (its CPU measured apart from the load generator's): it prints ``port N`` once listening,
then one line ``<webhook-id> <type> <notification id> <status answered>`` per request, in
batches; it exits when its stdin is closed. :class:`HookTally` counts those lines by
``webhook-id``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import cast

import orjson

from tidings.bench.sink import NO_ID, on_uvloop, serve_reporting

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
DOWN = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
# What an accepted email notification reports, in order (docs/webhooks.md, "Events").
EMAIL_PATH = ("notification.queued", "notification.delivered")
Request = Callable[[str, str, str, int], None]


@dataclass
class HookCounts:
    expected: int  # events: one per step of EMAIL_PATH per notification delivered by email
    received: int  # expected events that arrived answered 2xx
    lost: int
    duplicated: int  # 2xx requests beyond the first of one event (same or another webhook-id)
    requests: int  # every request the receiver got, whatever it answered
    refused: int  # requests answered non-2xx (--down)
    webhook_ids: int  # distinct webhook-ids seen

    def line(self, down: bool = False, slow_ms: int = 0) -> str:
        if down:  # nothing was expected to arrive: what was refused is the figure
            return (
                f"webhooks: the receiver was down (503 to every request): {self.requests} "
                f"requests for {self.webhook_ids} webhook-ids refused during the run"
            )
        if slow_ms:  # not waited for: at its pace the rest arrives long after the mail
            return (
                f"webhooks: the receiver was slow (204 after {slow_ms} ms): {self.received} of "
                f"{self.expected} events received during the run, {self.duplicated} duplicated; "
                f"{self.requests} requests"
            )
        return (
            f"webhooks: {self.received} of {self.expected} events received, {self.lost} lost, "
            f"{self.duplicated} duplicated; {self.requests} requests ({self.refused} refused), "
            f"{self.webhook_ids} webhook-ids"
        )


@dataclass
class HookTally:
    """Requests by ``webhook-id``, and the webhook-ids of each (notification, event type)."""

    requests: dict[str, int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)  # webhook-id -> 2xx answers
    events: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def arrive(self, webhook_id: str, event_type: str, nid: str, status: int) -> None:
        self.requests[webhook_id] = self.requests.get(webhook_id, 0) + 1
        if 200 <= status < 300:
            self.accepted[webhook_id] = self.accepted.get(webhook_id, 0) + 1
            self.events.setdefault((nid, event_type), set()).add(webhook_id)
        self.changed.set()

    def received(self, nid: str, event_type: str) -> bool:
        return (nid, event_type) in self.events

    def count(self, delivered: Collection[str]) -> HookCounts:
        """Against the notifications delivered by email: each should have reported every
        step of EMAIL_PATH once (lost: an event never answered 2xx; duplicated: 2xx answers
        beyond the first for one event)."""
        expected = [(nid, t) for nid in delivered for t in EMAIL_PATH]
        got = [k for k in expected if k in self.events]
        duplicated = sum(
            sum(self.accepted[w] for w in self.events[k]) - 1 for k in got if k in self.events
        )
        requests = sum(self.requests.values())
        return HookCounts(
            expected=len(expected),
            received=len(got),
            lost=len(expected) - len(got),
            duplicated=duplicated,
            requests=requests,
            refused=requests - sum(self.accepted.values()),
            webhook_ids=len(self.requests),
        )


def event_of(body: bytes) -> tuple[str, str]:
    """(type, notification id) of an event's body; ``-`` for what is missing."""
    try:
        event = orjson.loads(body)
        data = event.get("data") or {}
        return str(event.get("type") or NO_ID), str(data.get("notification_id") or NO_ID)
    except (orjson.JSONDecodeError, AttributeError):
        return NO_ID, NO_ID


class HookReceiver(asyncio.Protocol):
    """One HTTP/1.1 connection; requests may come back to back on it (keep-alive)."""

    def __init__(self, on_request: Request, down: bool, slow_ms: int = 0) -> None:
        self.on_request = on_request
        self.answer, self.status = (DOWN, 503) if down else (NO_CONTENT, 204)
        self.delay_s = slow_ms / 1000
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        assert self.transport is not None
        out = []
        while (end := buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(buf[:end]).lower()
            length = _header(head, b"content-length:")
            if not length.isdigit():
                self.transport.write(BAD)
                self.transport.close()
                return
            if len(buf) < end + 4 + int(length):
                break  # the rest of the body is still on its way
            body = bytes(buf[end + 4 : end + 4 + int(length)])
            del buf[: end + 4 + int(length)]
            event_type, nid = event_of(body)
            self.on_request(_header(head, b"webhook-id:"), event_type, nid, self.status)
            out.append(self.answer)
        if out and self.delay_s:
            # Answers in order (HTTP/1.1): each is delayed by the same time.
            asyncio.get_running_loop().call_later(self.delay_s, self._write, b"".join(out))
        elif out:
            self.transport.write(b"".join(out))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


def _header(head: bytes, name: bytes) -> str:
    """A header's value from a lower-cased header block (``-`` when absent)."""
    at = head.find(b"\n" + name)
    if at < 0:
        return NO_ID
    end = head.find(b"\r\n", at + 1)
    value = head[at + 1 + len(name) : end if end >= 0 else len(head)].strip()
    return value.decode("ascii", "replace") or NO_ID


async def serve(
    on_request: Request, port: int = 0, down: bool = False, slow_ms: int = 0
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: HookReceiver(on_request, down, slow_ms), "127.0.0.1", port
    )


async def _main(port: int, down: bool, slow_ms: int) -> None:
    def on_request(emit: Callable[[str], None]) -> Request:
        def one(webhook_id: str, event_type: str, nid: str, status: int) -> None:
            clean = (v.replace(" ", "_").replace("\n", "_") for v in (webhook_id, event_type, nid))
            emit(f"{' '.join(clean)} {status}\n")

        return one

    await serve_reporting(lambda emit: serve(on_request(emit), port, down, slow_ms))


def main() -> None:
    parser = argparse.ArgumentParser(description="the benchmark's webhook receiver")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--down", action="store_true", help="answer 503 to every request")
    parser.add_argument("--slow", type=int, default=0, metavar="MS", help="answer after MS ms")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        on_uvloop(_main(args.port, args.down, args.slow))


if __name__ == "__main__":
    main()
