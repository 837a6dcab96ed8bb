"""Every status change of N notifications through the whole path arrives once per
subscribed endpoint, verified with ``standardwebhooks``, the filter honoured, ``sequence``
increasing along each notification's history; a receiver answering 503 gets everything once
it recovers, under the same ``webhook-id``s; 410 disables the endpoint."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.credentials import SECRET_KEY
from tests.helpers import wait_for_condition
from tests.scenario import create_user
from tests.system import System
from tests.webhooks.conftest import WorkerHandle
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import ENDPOINTS, client_key, delete_all, register, send
from tidings.core.auth import unsubscribe_token

N = 20
REFUSED = 10
# An email notification's changes through the whole path (pending is not reported).
PATH = ["notification.queued", "notification.delivered"]


def by_notification(receiver: Receiver) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for body in receiver.accepted.values():
        found.setdefault(body["data"]["notification_id"], []).append(body)
    return found


async def test_each_change_once_per_subscribed_endpoint(
    system: System, worker: WorkerHandle
) -> None:
    gw = system.gateway
    await delete_all(gw)
    everything, client_side = await Receiver().start(), await Receiver().start()
    try:
        key = await client_key(gw, "shop")
        await register(gw, everything, ["*"])  # the admin's: every client's events
        await register(gw, client_side, ["notification.delivered"], headers=key)
        mine = await send(gw, N // 2, headers=key)
        others = await send(gw, N // 2)
        await everything.wait_for(lambda: len(everything.accepted) >= N * len(PATH), 60, "all")
        await client_side.wait_for(lambda: len(client_side.accepted) >= N // 2, 60, "mine")
        # Nothing more is on its way: every history row has been through the worker.
        for receiver in (everything, client_side):
            assert receiver.unverified == 0
            assert set(receiver.requests.values()) == {1}, "each webhook-id once"
        seen = by_notification(everything)
        assert set(seen) == set(mine) | set(others)
        for nid, events in seen.items():
            types = Counter(e["type"] for e in events)
            assert types == Counter(PATH), (nid, types)
            sequences = [e["data"]["sequence"] for e in events]
            assert len(set(sequences)) == len(sequences)
            history = (await gw.get(f"/api/v1/notifications/{nid}/")).json()["data"]
            expected = [f"notification.{h['status']}" for h in history["history"]]
            expected = [t for t in expected if t != "notification.pending"]
            ordered = [e["type"] for e in sorted(events, key=lambda e: e["data"]["sequence"])]
            assert ordered == expected, (ordered, expected)
            assert all(e["data"]["channel"] == "email" for e in events)
            assert all(e["data"]["request_id"] for e in events)
        # The client's endpoint: its own notifications only, delivered only.
        client_seen = by_notification(client_side)
        assert set(client_seen) == set(mine)
        assert {e["type"] for events in client_seen.values() for e in events} == {
            "notification.delivered"
        }
        # A client sees its own endpoint only; the admin sees both.
        assert len((await gw.get(ENDPOINTS, headers=key)).json()["data"]) == 1
        assert len((await gw.get(ENDPOINTS)).json()["data"]) == 2
    finally:
        await everything.stop()
        await client_side.stop()


@pytest.mark.parametrize(
    "hold_s", [pytest.param(0, id="bounded"), pytest.param(60, id="60s", marks=pytest.mark.slow)]
)
async def test_a_receiver_down_then_back_gets_everything_under_the_same_ids(
    system: System, worker: WorkerHandle, hold_s: float
) -> None:
    """503 until the receiver has refused REFUSED requests, some of them retries (the
    endpoint's breaker opens meanwhile: its messages wait without spending attempts), then
    200: every event arrives, each retry carried its first webhook-id, 0 lost. The 60 s
    outage of the issue is the slow form (the breaker's probes spend the attempts then)."""
    gw = system.gateway
    await delete_all(gw)
    receiver = await Receiver().start()
    try:
        receiver.answer = 503
        await register(gw, receiver, ["*"])
        ids = await send(gw, N)
        await receiver.wait_for(
            lambda: (
                receiver.ids_by_answer[503] >= REFUSED
                and any(n > 1 for n in receiver.requests.values())
            ),
            60,
            "refusals, retries among them",
        )
        if hold_s:  # the outage itself (the slow form): the receiver stays down this long
            await asyncio.sleep(hold_s)
        refused = dict(receiver.requests)
        receiver.answer = 200
        await receiver.wait_for(lambda: len(receiver.accepted) >= N * len(PATH), 90, "recovered")
        assert receiver.unverified == 0
        assert set(refused) <= set(receiver.accepted), "retries kept their webhook-id"
        assert len(receiver.accepted) == N * len(PATH), "one webhook-id per event"
        seen = by_notification(receiver)
        assert set(seen) == set(ids)
        assert all(Counter(e["type"] for e in v) == Counter(PATH) for v in seen.values())
        lost = N * len(PATH) - len(receiver.accepted)
        retried = sum(1 for n in receiver.requests.values() if n > 1)
        print(f"\n503 then 200: {len(receiver.accepted)} delivered, {lost} lost, {retried} retried")
        assert lost == 0
        endpoint = (await gw.get(ENDPOINTS)).json()["data"][0]
        listing = f"{ENDPOINTS}{endpoint['endpoint_id']}/messages/?limit=100"

        async def recorded() -> bool:
            # The worker writes outcomes by group commit: the receiver has an answer's
            # request a moment before the database has its outcome.
            found = (await gw.get(listing)).json()["data"]
            return all(m["state"] == "delivered" for m in found)

        await wait_for_condition(recorded, timeout_s=30, what="the outcomes recorded")
        page = await gw.get(listing)
        messages = page.json()["data"]
        assert page.json()["meta"]["total"] == N * len(PATH)
        tried = [m for m in messages if m["attempts"] > 1]
        assert tried and all(a["status_code"] == 503 for m in tried for a in m["attempt_log"][:-1])
        assert all(m["attempt_log"][-1]["status_code"] == 200 for m in messages)
        # Every attempt is in the log, the success (written on the message) last.
        assert all(len(m["attempt_log"]) == m["attempts"] for m in messages)
    finally:
        await receiver.stop()


async def test_410_disables_the_endpoint(system: System, worker: WorkerHandle) -> None:
    gw = system.gateway
    await delete_all(gw)
    gone, watcher = await Receiver().start(), await Receiver().start()
    try:
        gone.answer = 410
        endpoint = await register(gw, gone, ["notification.delivered"])
        await register(gw, watcher, ["endpoint.disabled"])
        await send(gw, 3)
        await watcher.wait_for(lambda: len(watcher.accepted) >= 1, 60, "endpoint.disabled")
        [event] = watcher.accepted.values()
        assert event["type"] == "endpoint.disabled"
        assert event["data"]["endpoint_id"] == endpoint["endpoint_id"]
        found = (await gw.get(f"{ENDPOINTS}{endpoint['endpoint_id']}/")).json()["data"]
        assert found["disabled"] is True
        assert "410" in found["disabled_reason"]
        # Disabled: nothing more is sent to it.
        before = sum(gone.requests.values())
        await send(gw, 2)
        await watcher.wait_for(lambda: True, 1, "")
        page = await gw.get(f"{ENDPOINTS}{endpoint['endpoint_id']}/messages/?state=pending")
        assert sum(gone.requests.values()) == before
        assert page.status_code == 200
    finally:
        await gone.stop()
        await watcher.stop()


async def test_an_unsubscribe_reaches_the_admins_endpoints(
    system: System, worker: WorkerHandle
) -> None:
    """``user.unsubscribed``: a user belongs to no one client, so the admin's endpoints get it;
    a client's endpoint subscribed to it does not."""
    gw = system.gateway
    await delete_all(gw)
    admins, clients = await Receiver().start(), await Receiver().start()
    try:
        await register(gw, admins, ["user.unsubscribed"])
        await register(gw, clients, ["user.unsubscribed"], headers=await client_key(gw, "c"))
        user = await create_user(gw)
        token = unsubscribe_token(SECRET_KEY, user["user_id"])
        assert (await gw.post(f"/unsubscribe/{token}/")).status_code == 200
        await admins.wait_for(lambda: len(admins.accepted) == 1, 30, "user.unsubscribed")
        [event] = admins.accepted.values()
        assert event["type"] == "user.unsubscribed"
        assert event["data"] == {"user_id": user["user_id"], "channel": "email", "category": None}
        assert clients.requests == Counter()
    finally:
        await admins.stop()
        await clients.stop()
