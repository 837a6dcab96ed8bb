"""RabbitMQ acknowledgements with ``multiple`` (core.bus.acks): the deliveries a group handled
together are acknowledged in a frame or two, a slow delivery does not hold the others' acks
(or the consumer's prefetch window would fill behind it), a requeued one comes back, and
nothing handled is given again once the bus has closed."""

from __future__ import annotations

import asyncio
import uuid

from tidings.bench.preflight import queued_messages
from tidings.core.bus import BusMessage
from tidings.core.bus.rabbit import RabbitBus
from tidings.core.topology import EMAIL_QUEUE, EMAIL_ROUTE


async def _publish(bus: RabbitBus, ids: list[str]) -> None:
    for mid in ids:
        await bus.publish(EMAIL_ROUTE, b"{}", message_id=mid)


async def test_a_group_handled_together_is_acknowledged_in_few_frames(fresh_vhost: str) -> None:
    bus = RabbitBus(fresh_vhost)
    await bus.start()
    ids = [uuid.uuid4().hex for _ in range(20)]
    entered: set[str] = set()
    all_in, handled = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    async def group(message: BusMessage) -> None:
        entered.add(message.message_id)
        if len(entered) == len(ids):
            all_in.set()
        await all_in.wait()  # the twenty finish together, as a group of the flow does
        seen.append(message.message_id)
        if len(seen) == len(ids):
            handled.set()

    try:
        await bus.consume(EMAIL_QUEUE, group, prefetch=50)
        await _publish(bus, ids)
        await asyncio.wait_for(handled.wait(), 20)
    finally:
        frames = bus._acks[0].frames if bus._acks else -1
        await bus.close()
    assert sorted(seen) == sorted(ids)
    assert 1 <= frames <= 3, frames  # one ack per delivery before: 20
    assert await queued_messages(fresh_vhost) == {}  # every one acknowledged, none back


async def test_a_slow_head_does_not_hold_the_others(fresh_vhost: str) -> None:
    bus = RabbitBus(fresh_vhost)
    await bus.start()
    head, rest = uuid.uuid4().hex, [uuid.uuid4().hex for _ in range(20)]
    release, fast_done = asyncio.Event(), asyncio.Event()
    handled: list[str] = []

    async def handler(message: BusMessage) -> None:
        if message.message_id == head:
            await release.wait()
        handled.append(message.message_id)
        if len([m for m in handled if m != head]) == len(rest):
            fast_done.set()

    try:
        # A window of 5: had the twenty waited for the head's ack, only 4 would ever come.
        await bus.consume(EMAIL_QUEUE, handler, prefetch=5)
        await _publish(bus, [head, *rest])
        await asyncio.wait_for(fast_done.wait(), 20)
        assert head not in handled
        release.set()
    finally:
        release.set()
        await bus.close()
    assert sorted(handled) == sorted([head, *rest])
    assert await queued_messages(fresh_vhost) == {}


async def test_a_requeued_delivery_comes_back_and_the_others_stay_acknowledged(
    fresh_vhost: str,
) -> None:
    bus = RabbitBus(fresh_vhost)
    await bus.start()
    ids = [uuid.uuid4().hex for _ in range(10)]
    flaky = ids[4]
    handled: list[str] = []
    refused = 0
    done = asyncio.Event()

    async def handler(message: BusMessage) -> None:
        nonlocal refused
        if message.message_id == flaky and not refused:
            refused += 1
            raise RuntimeError("once")
        handled.append(message.message_id)
        if len(handled) == len(ids):
            done.set()

    try:
        await bus.consume(EMAIL_QUEUE, handler, prefetch=50)
        await _publish(bus, ids)
        await asyncio.wait_for(done.wait(), 20)
    finally:
        await bus.close()
    assert refused == 1 and sorted(handled) == sorted(ids)  # each once, the flaky one after
    assert await queued_messages(fresh_vhost) == {}
