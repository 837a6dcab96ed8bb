"""``device.removed`` through the whole path: a push to a user one of whose devices' push
service answers 410 → the push worker marks it dead and its report names it → the gateway
captures ``device.removed`` for the notification's owner, with the report → the webhooks
worker signs and sends it. The receivers (tests/webhooks/receiver.py) verify every request
with ``standardwebhooks``: the owner's endpoint and the admin's get it once; another
client's endpoint gets nothing; a repeated report sends nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.gateway.test_status_batches import publish
from tests.push.conftest import PushWorld, start_world
from tests.push.support import final_status, gone_and_alive, send_push
from tests.webhooks.conftest import SHORT, WorkerHandle, worker_settings
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import ENDPOINTS, client_key, delete_all, register
from tidings.core.messages import RemovedDevice, StatusEvent
from tidings.core.status import Status


@pytest.fixture(scope="module")
async def world(
    pg_database: str, amqp_vhost: str, redis_url: str, cache_namespace: str
) -> AsyncIterator[PushWorld]:
    """The push world with the webhooks' short schedule (and http to loopback allowed)."""
    started = await start_world(pg_database, amqp_vhost, redis_url, cache_namespace, **SHORT)
    try:
        yield started
    finally:
        # The database is the session's: no endpoint left to capture other modules' events.
        await delete_all(started.system.gateway)
        await started.close()


@pytest.fixture(scope="module")
async def worker(world: PushWorld) -> AsyncIterator[WorkerHandle]:
    handle = await WorkerHandle(worker_settings(world.system)).start()
    try:
        yield handle
    finally:
        await handle.stop()


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    peers = [await Receiver().start() for _ in range(3)]
    try:
        yield peers
    finally:
        for peer in peers:
            await peer.stop()


async def messages(gw: httpx.AsyncClient, endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    answer = await gw.get(f"{ENDPOINTS}{endpoint['endpoint_id']}/messages/?limit=100")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["data"]
    return found


def barrier_in(peer: Receiver) -> bool:
    return any(e["data"]["device_id"] == "barrier-device" for e in peer.accepted.values())


async def test_a_gone_device_reaches_its_owners_endpoints_once_and_no_one_elses(
    world: PushWorld, worker: WorkerHandle, receivers: list[Receiver], amqp_vhost: str
) -> None:
    gw, push = world.system.gateway, world.webpush
    shop, other = await client_key(gw, "shop"), await client_key(gw, "other shop")
    mine, admins, theirs = receivers
    mine_endpoint = await register(gw, mine, ["device.removed"], headers=shop)
    # The admin's: every client's events.
    admins_endpoint = await register(gw, admins, ["device.removed"])
    theirs_endpoint = await register(gw, theirs, ["*"], headers=other)

    code, user_id, _, _, gone_id = await gone_and_alive(gw, push)

    nid = await send_push(gw, user_id, code, headers=shop)
    done = await final_status(gw, nid)
    assert done["status"] == "delivered", done  # the live device took it

    for peer in (mine, admins):
        await peer.wait_for(lambda: bool(peer.accepted), 30, "device.removed")  # noqa: B023
        [(webhook_id, event)] = peer.accepted.items()
        assert peer.requests[webhook_id] == 1 and peer.unverified == 0
        assert event["type"] == "device.removed"
        assert event["data"] == {
            "notification_id": nid,
            "request_id": done["request_id"],
            "user_id": user_id,
            "device_id": gone_id,
            "reason": "push service answered 410: subscription gone",
        }

    # The report again, as a redelivered batch would bring it, naming one more device: its
    # event is fanned out after the repeat's (outbox order), so when it has arrived the
    # repeat has been fanned out too, and it made no message.
    repeat = StatusEvent(
        notification_id=nid,
        status=Status.DELIVERED,
        channel="push",
        detail="a repeated report",
        removed_devices=[
            RemovedDevice(device_id=gone_id, reason="push service answered 410: again"),
            RemovedDevice(device_id="barrier-device", reason="barrier"),
        ],
    )
    await publish(amqp_vhost, repeat.dumps(), message_id=f"{nid}-repeat")

    for peer, endpoint in ((mine, mine_endpoint), (admins, admins_endpoint)):
        await peer.wait_for(lambda: barrier_in(peer), 30, "the barrier's event")  # noqa: B023
        sent = await messages(gw, endpoint)
        assert sorted(m["payload"]["data"]["device_id"] for m in sent) == sorted(
            [gone_id, "barrier-device"]
        ), sent
        assert sorted(peer.requests.values()) == [1, 1], peer.requests
    assert await messages(gw, theirs_endpoint) == []
    assert not theirs.requests and theirs.unverified == 0
