"""The bench refuses to start on a broker whose queues still hold an earlier run's messages
(their work would be counted as the new run's), and starts on empty or not yet made ones."""

from __future__ import annotations

import pytest

from tidings.bench.preflight import queued_messages, require_empty_queues
from tidings.core.bus.rabbit import RabbitBus
from tidings.core.topology import EMAIL_QUEUE, EMAIL_ROUTE
from tidings.credentials import ConfigurationError


async def test_a_fresh_vhost_and_empty_queues_pass(fresh_vhost: str) -> None:
    assert await queued_messages(fresh_vhost) == {}  # no queue made yet
    bus = RabbitBus(fresh_vhost)
    await bus.start()  # the topology, every queue empty
    try:
        await require_empty_queues(fresh_vhost)
    finally:
        await bus.close()


async def test_an_earlier_runs_messages_stop_the_bench(fresh_vhost: str) -> None:
    bus = RabbitBus(fresh_vhost)
    await bus.start()
    try:
        for i in range(3):
            await bus.publish(EMAIL_ROUTE, b"{}", message_id=f"left-{i}")
        await bus.publish(EMAIL_ROUTE, b"{}", message_id="a-retry", delay_s=300)
    finally:
        await bus.close()
    assert await queued_messages(fresh_vhost) == {
        EMAIL_QUEUE: 3,
        f"{EMAIL_ROUTE}.retry.256000ms": 1,
    }
    with pytest.raises(ConfigurationError, match=f"{EMAIL_QUEUE} 3"):
        await require_empty_queues(fresh_vhost)
