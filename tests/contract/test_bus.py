"""The bus port's contract (tidings.core.bus), run against both adapters."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.contract.conftest import LIMIT
from tidings.core.bus import Bus, BusMessage, DeadLetter
from tidings.core.errors import DependencyUnavailable
from tidings.core.logs import correlation_id
from tidings.core.topology import (
    EMAIL_QUEUE,
    EMAIL_ROUTE,
    FAILED_QUEUE,
    PUSH_QUEUE,
    PUSH_ROUTE,
    REASON_HEADER,
    SOURCE_QUEUE_HEADER,
    STATUS_QUEUE,
    STATUS_ROUTE,
)


class Collector:
    """A handler that records what it sees, for one test's message ids only."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids
        self.seen: asyncio.Queue[tuple[BusMessage, str | None]] = asyncio.Queue()

    async def __call__(self, message: BusMessage) -> None:
        if message.message_id in self.ids:
            self.seen.put_nowait((message, correlation_id.get()))

    async def next(self) -> tuple[BusMessage, str | None]:
        return await asyncio.wait_for(self.seen.get(), 20)


async def test_publish_then_consume_keeps_body_headers_and_correlation(bus: Bus) -> None:
    mid = uuid.uuid4().hex
    collector = Collector({mid})
    await bus.consume(EMAIL_QUEUE, collector, prefetch=10)
    token = correlation_id.set("corr-contract")
    try:
        await bus.publish(EMAIL_ROUTE, b'{"x": 1}', message_id=mid, headers={"x-attempt": 2})
    finally:
        correlation_id.reset(token)
    message, seen_correlation = await collector.next()
    assert message.body == b'{"x": 1}'
    assert message.message_id == mid
    assert message.headers["x-attempt"] == 2
    assert message.correlation_id == "corr-contract"
    assert seen_correlation == "corr-contract", "the handler runs under the message's id"


async def test_unroutable_publish_is_an_error(bus: Bus) -> None:
    with pytest.raises(DependencyUnavailable):
        await bus.publish("no-such-route", b"{}", message_id="x")


async def test_dead_letter_goes_to_failed_queue_with_reason(bus: Bus) -> None:
    mid = uuid.uuid4().hex

    async def refuse(message: BusMessage) -> None:
        if message.message_id == mid:
            raise DeadLetter("permanent: template missing")

    failed = Collector({mid})
    await bus.consume(PUSH_QUEUE, refuse, prefetch=5)
    await bus.consume(FAILED_QUEUE, failed, prefetch=5)
    await bus.publish(PUSH_ROUTE, b"{}", message_id=mid)
    message, _ = await failed.next()
    assert message.headers[REASON_HEADER] == "permanent: template missing"
    assert message.headers[SOURCE_QUEUE_HEADER] == PUSH_QUEUE
    assert failed.seen.empty()


async def test_failing_handler_gets_the_message_again(bus: Bus) -> None:
    mid = uuid.uuid4().hex
    attempts: list[int] = []
    done = asyncio.Event()

    async def flaky(message: BusMessage) -> None:
        if message.message_id != mid:
            return
        attempts.append(message.delivery_count)
        if len(attempts) < 2:
            raise RuntimeError("first try fails")
        done.set()

    await bus.consume(EMAIL_QUEUE, flaky, prefetch=5)
    await bus.publish(EMAIL_ROUTE, b"{}", message_id=mid)
    await asyncio.wait_for(done.wait(), 20)
    assert len(attempts) == 2


async def test_poison_message_is_dead_lettered_after_the_delivery_limit(bus: Bus) -> None:
    mid = uuid.uuid4().hex
    deliveries = 0

    async def always_fails(message: BusMessage) -> None:
        nonlocal deliveries
        if message.message_id == mid:
            deliveries += 1
            raise RuntimeError("poison")

    failed = Collector({mid})
    await bus.consume(EMAIL_QUEUE, always_fails, prefetch=5)
    await bus.consume(FAILED_QUEUE, failed, prefetch=5)
    await bus.publish(EMAIL_ROUTE, b"{}", message_id=mid)
    message, _ = await failed.next()
    assert message.message_id == mid
    assert deliveries == LIMIT + 1, "RabbitMQ's rule: dead-lettered once failures exceed the limit"


async def test_delayed_publish_waits_for_its_tier(bus: Bus) -> None:
    mid = uuid.uuid4().hex
    collector = Collector({mid})
    await bus.consume(EMAIL_QUEUE, collector, prefetch=5)
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    await bus.publish(EMAIL_ROUTE, b"{}", message_id=mid, delay_s=0.2)  # the 1 s tier
    message, _ = await collector.next()
    assert message.message_id == mid
    assert loop.time() - sent_at >= 0.95, "a delayed message arrived before its tier's delay"


async def test_later_sends_a_status_event_round_again_spending_no_delivery(bus: Bus) -> None:
    """How a consumer waits out an outage: the message comes back after its tier, with its
    headers (and the ones added), as a new message the broker has never delivered."""
    mid = uuid.uuid4().hex
    collector = Collector({mid})
    sent_at = asyncio.get_running_loop().time()

    async def waits_once(message: BusMessage) -> None:
        if message.message_id == mid and "x-waits" not in message.headers:
            await bus.later(message, STATUS_ROUTE, 0.2, headers={"x-waits": 1})
            return
        await collector(message)

    await bus.consume(STATUS_QUEUE, waits_once, prefetch=5)
    await bus.publish(STATUS_ROUTE, b"{}", message_id=mid, headers={"x-kept": "yes"})
    message, _ = await collector.next()
    assert message.headers["x-kept"] == "yes" and message.headers["x-waits"] == 1
    assert asyncio.get_running_loop().time() - sent_at >= 0.95
    assert message.delivery_count == 0  # a new message: no delivery spent


async def test_close_lets_the_handler_in_flight_finish(bus: Bus) -> None:
    mid = uuid.uuid4().hex
    entered, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow(message: BusMessage) -> None:
        if message.message_id != mid:
            return
        entered.set()
        await release.wait()
        finished.set()

    await bus.consume(PUSH_QUEUE, slow, prefetch=5)
    await bus.publish(PUSH_ROUTE, b"{}", message_id=mid)
    await asyncio.wait_for(entered.wait(), 20)
    closing = asyncio.create_task(bus.close())
    # close() must not finish while the handler is in flight: wait for it, bounded.
    done, _ = await asyncio.wait({closing}, timeout=0.5)
    assert not done, "close() returned with a handler still in flight"
    release.set()
    await asyncio.wait_for(closing, 20)
    assert finished.is_set()
