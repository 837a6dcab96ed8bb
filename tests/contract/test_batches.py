"""Several notifications in one message to a worker's queue (core.bus.batch_message and
unbatched; the relay's grouping, gateway.relay): each is handled as if it came alone, under
its own id and correlation id; one dead-lettered goes to failed.queue alone; a failure of one
returns the whole batch, which comes again whole. Against both adapters."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import pytest

from tidings.core.bus import (
    Bus,
    BusMessage,
    DeadLetter,
    batch_message,
    split_batch,
    unbatched,
)
from tidings.core.logs import correlation_id
from tidings.core.topology import (
    BATCH_IDS_HEADER,
    EMAIL_QUEUE,
    EMAIL_ROUTE,
    FAILED_QUEUE,
    PUSH_ROUTE,
    REASON_HEADER,
    STATUS_ROUTE,
)
from tidings.gateway.relay import OutboxRelay, Written


class Seen:
    """What a handler saw, for one test's ids only: (id, correlation id, body, headers,
    delivery count) each."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids
        self.queue: asyncio.Queue[tuple[str, str | None, bytes, dict[str, Any], int]] = (
            asyncio.Queue()
        )

    def record(self, message: BusMessage) -> bool:
        if message.message_id not in self.ids:
            return False
        self.queue.put_nowait(
            (
                message.message_id,
                correlation_id.get(),
                message.body,
                message.headers,
                message.delivery_count,
            )
        )
        return True

    async def take(self, n: int) -> list[tuple[str, str | None, bytes, dict[str, Any], int]]:
        return [await asyncio.wait_for(self.queue.get(), 20) for _ in range(n)]


def _batch(ids: list[str], bodies: list[bytes]) -> tuple[bytes, dict[str, Any]]:
    body, headers = batch_message(bodies, ids, [f"corr-{i}" for i in ids])
    return body, {**headers, "x-other": 7}


async def test_each_of_a_batch_is_handled_alone_and_a_dead_letter_goes_alone(bus: Bus) -> None:
    ids = [uuid.uuid4().hex for _ in range(3)]
    seen, failed = Seen(set(ids)), Seen(set(ids))

    async def handler(message: BusMessage) -> None:
        if seen.record(message):
            try:
                json.loads(message.body)
            except ValueError as exc:
                raise DeadLetter("bad body") from exc

    async def on_failed(message: BusMessage) -> None:
        failed.record(message)

    await bus.consume(EMAIL_QUEUE, unbatched(handler, bus, EMAIL_QUEUE), prefetch=5)
    await bus.consume(FAILED_QUEUE, on_failed, prefetch=5)
    bodies = [b'{"n": 1}', b"not json", b'{"n": 3}']
    body, headers = _batch(ids, bodies)
    await bus.publish(EMAIL_ROUTE, body, message_id=ids[0], headers=headers)

    got = {i: (c, b, h) for i, c, b, h, _ in await seen.take(3)}
    assert set(got) == set(ids)
    for i, expected in zip(ids, bodies, strict=True):
        corr, b, h = got[i]
        assert (corr, b) == (f"corr-{i}", expected), "its own correlation id and body"
        assert h.get("x-other") == 7 and BATCH_IDS_HEADER not in h, "the batch's other headers"
    [(dead_id, _, dead_body, dead_headers, _)] = await failed.take(1)
    assert (dead_id, dead_body) == (ids[1], b"not json")
    assert dead_headers[REASON_HEADER] == "bad body"


async def test_a_failure_of_one_returns_the_whole_batch(bus: Bus) -> None:
    ids = [uuid.uuid4().hex for _ in range(3)]
    seen = Seen(set(ids))
    failing = {ids[2]: 1}  # fails the first time only

    async def handler(message: BusMessage) -> None:
        if seen.record(message) and failing.get(message.message_id, 0) > 0:
            failing[message.message_id] -= 1
            raise RuntimeError("a bug, once")

    await bus.consume(EMAIL_QUEUE, unbatched(handler, bus, EMAIL_QUEUE), prefetch=5)
    body, headers = _batch(ids, [b"{}", b"{}", b"{}"])
    await bus.publish(EMAIL_ROUTE, body, message_id=ids[0], headers=headers)
    first = await seen.take(3)
    again = await seen.take(3)
    assert sorted(i for i, *_ in first) == sorted(i for i, *_ in again) == sorted(ids)
    assert {count for *_, count in first} == {0}
    assert {count for *_, count in again} == {1}, "the batch came again, whole"


def test_a_malformed_batch_is_a_dead_letter() -> None:
    body, headers = batch_message([b"{}", b"{}"], ["a", "b"], ["c", "d"])
    headers[BATCH_IDS_HEADER] = ["a"]
    with pytest.raises(DeadLetter, match="malformed batch"):
        split_batch(BusMessage(body=body, routing_key=EMAIL_ROUTE, message_id="a", headers=headers))
    with pytest.raises(ValueError, match="newline"):
        batch_message([b"{\n}"], ["a"], [None])


def _row(i: int, route: str, payload: bytes = b"{}") -> Written:
    now = dt.datetime.now(dt.UTC)
    return Written(i, uuid.uuid4(), route, payload, f"c{i}", now, now)


def test_the_relay_groups_a_worker_queue_s_rows_up_to_work_batch() -> None:
    relay = OutboxRelay(None, None, batch_size=200, poll_s=1, work_batch=10)  # type: ignore[arg-type]
    rows = [_row(i, EMAIL_ROUTE) for i in range(25)]
    rows[3:3] = [_row(100, PUSH_ROUTE), _row(101, STATUS_ROUTE), _row(102, PUSH_ROUTE)]
    rows.append(_row(103, EMAIL_ROUTE, b'{"a":\n1}'))  # a newline: it cannot go in a batch
    messages = relay._messages(rows)
    shapes = [(m[0].routing_key, len(m)) for m in messages]
    assert shapes == [
        (EMAIL_ROUTE, 10),
        (PUSH_ROUTE, 2),
        (STATUS_ROUTE, 1),
        (EMAIL_ROUTE, 10),
        (EMAIL_ROUTE, 5),
        (EMAIL_ROUTE, 1),
    ]
    assert [r.id for m in messages for r in m if r.routing_key == EMAIL_ROUTE] == [
        *range(25),
        103,
    ], "each route's rows in their order"
    assert relay._messages([]) == []
    single = OutboxRelay(None, None, batch_size=200, poll_s=1, work_batch=1)  # type: ignore[arg-type]
    assert all(len(m) == 1 for m in single._messages(rows))
