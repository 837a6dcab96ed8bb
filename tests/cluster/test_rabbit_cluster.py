"""The RabbitMQ adapter as a client of a three-node cluster (deploy/cluster/local.sh): several
addresses, any live node, the next one when its node goes, the topology declared again, quorum
queues with three replicas."""

from __future__ import annotations

import json

import aio_pika
import pytest

from tests.cluster.conftest import RABBIT_PORTS, ascript
from tests.helpers import wait_for_condition
from tidings.core.bus import BusMessage
from tidings.core.bus.rabbit import RabbitBus, amqp_addresses
from tidings.core.errors import DependencyUnavailable
from tidings.core.topology import EMAIL_QUEUE, EMAIL_ROUTE, QUEUES

pytestmark = pytest.mark.timeout(150)


def node_of(bus: RabbitBus) -> int:
    """Which node (1..3) the bus is connected to."""
    assert bus.node is not None
    return RABBIT_PORTS.index(int(bus.node.rsplit(":", 1)[1])) + 1


async def members(vhost_url: str) -> dict[str, int]:
    vhost = vhost_url.rsplit("/", 1)[1]
    out = await ascript(
        "rabbitmqctl", "1", "list_queues", "-p", vhost, "name", "members", "--formatter", "json"
    )
    return {q["name"]: len(q["members"]) for q in json.loads(out[out.index("[") :])}


def test_addresses_are_split_on_commas() -> None:
    assert amqp_addresses("amqp://a:5672/v, amqp://b:5672/v,") == [
        "amqp://a:5672/v",
        "amqp://b:5672/v",
    ]


async def test_connects_past_dead_addresses_and_refuses_when_none_lives(
    cluster_vhost: list[str],
) -> None:
    vhost = cluster_vhost[0].rsplit("/", 1)[1]
    dead = f"amqp://guest:guest@127.0.0.1:1/{vhost}"
    bus = RabbitBus(f"{dead},{cluster_vhost[1]},{dead}", publish_timeout_s=5)
    await bus.start()
    try:
        assert node_of(bus) == 2
        await bus.ping()
    finally:
        await bus.close()
    with pytest.raises(DependencyUnavailable, match=r"127\.0\.0\.1:1"):
        await RabbitBus(f"{dead},{dead}", publish_timeout_s=5).start()


async def test_quorum_queues_have_three_replicas_and_an_older_queue_is_kept(
    cluster_vhost: list[str],
) -> None:
    # email.queue as an older Tidings made it: no replica count (the broker's default).
    connection = await aio_pika.connect(cluster_vhost[0])
    channel = await connection.channel()
    await channel.declare_queue(EMAIL_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    await connection.close()
    bus = RabbitBus(",".join(cluster_vhost), delivery_limit=20, quorum_size=3)
    with pytest.raises(DependencyUnavailable):  # its other arguments differ: refused, as before
        await bus.start()
    await bus.close()

    async def drop() -> None:
        connection = await aio_pika.connect(cluster_vhost[0])
        await (await connection.channel()).queue_delete(EMAIL_QUEUE)
        await connection.close()

    await drop()
    # Made with every argument the adapter sets but the replica count: kept as it is.
    connection = await aio_pika.connect(cluster_vhost[0])
    channel = await connection.channel()
    await channel.declare_queue(
        EMAIL_QUEUE,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "notifications.direct",
            "x-dead-letter-routing-key": "failed",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": 20,
        },
    )
    await connection.close()
    bus = RabbitBus(",".join(cluster_vhost), delivery_limit=20, quorum_size=3)
    other = RabbitBus(",".join(cluster_vhost), delivery_limit=20, quorum_size=3)
    await bus.start()
    try:
        await other.start()  # another replica declares the same again
        found = await members(cluster_vhost[0])
        assert {spec.name for spec in QUEUES} <= set(found)
        assert all(n == 3 for n in found.values()), found
    finally:
        await other.close()
        await bus.close()


async def test_a_lost_node_moves_the_connection_and_its_consumer_to_another(
    cluster_vhost: list[str],
) -> None:
    bus = RabbitBus(",".join(cluster_vhost), publish_timeout_s=5)
    await bus.start()
    got: set[str] = set()

    async def handler(message: BusMessage) -> None:
        got.add(message.message_id)

    await bus.consume(EMAIL_QUEUE, handler, prefetch=10)
    before = node_of(bus)
    stopped = False
    try:
        for i in range(20):
            await bus.publish(EMAIL_ROUTE, b"{}", message_id=f"a{i}")
        await wait_for_condition(lambda: _async(len(got) == 20), timeout_s=30, what="first 20")
        await ascript("rabbitmqctl", str(before), "stop_app")
        stopped = True
        retried = 0
        for i in range(20):

            async def published(i: int = i) -> bool:
                """As the outbox relay does: an unconfirmed publish is sent again."""
                nonlocal retried
                try:
                    await bus.publish(EMAIL_ROUTE, b"{}", message_id=f"b{i}")
                except DependencyUnavailable:
                    retried += 1
                    return False
                return True

            await wait_for_condition(
                published, timeout_s=60, interval_s=0.2, what=f"b{i} published on another node"
            )
        await wait_for_condition(lambda: _async(len(got) == 40), timeout_s=60, what="all 40")
        assert node_of(bus) != before
        await bus.ping()
    finally:
        if stopped:
            await ascript("rabbitmqctl", str(before), "start_app")
        await bus.close()


async def _async(value: bool) -> bool:
    return value
