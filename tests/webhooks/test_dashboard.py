"""The dashboard's webhooks pages: the endpoints, one endpoint's messages with their
attempts, and a replay (CSRF-checked) that sends the message again under its webhook-id, its
first success kept in the log."""

from __future__ import annotations

import re

import httpx

from tests.credentials import ADMIN_KEY
from tests.helpers import wait_for_condition
from tests.system import System
from tests.webhooks.conftest import WorkerHandle
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import delete_all, register, send


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def test_the_dashboard_shows_attempts_and_replays(
    system: System, worker: WorkerHandle, receiver: Receiver
) -> None:
    await delete_all(system.gateway)
    endpoint = await register(system.gateway, receiver, ["notification.delivered"])
    endpoint_id = endpoint["endpoint_id"]
    await send(system.gateway, 1)
    await receiver.wait_for(lambda: len(receiver.accepted) == 1, 30, "delivered")
    [webhook_id] = receiver.accepted
    async with httpx.AsyncClient(base_url=str(system.gateway.base_url), timeout=10) as client:
        assert (await client.get("/dashboard/webhooks/")).status_code == 303  # sign in first
        signed = await client.post("/dashboard/login", data={"admin_key": ADMIN_KEY})
        assert signed.status_code == 303
        listing = await client.get("/dashboard/webhooks/")
        assert listing.status_code == 200 and f'id="e-{endpoint_id}"' in listing.text
        page = await client.get(f"/dashboard/webhooks/{endpoint_id}")
        assert f'id="m-{webhook_id}"' in page.text and "answered 200" in page.text
        url = f"/dashboard/webhooks/{endpoint_id}/replay"
        forged = await client.post(url, data={"csrf": "f" * 64, "webhook_id": webhook_id})
        assert forged.status_code == 403
        done = await client.post(url, data={"csrf": csrf_in(page.text), "webhook_id": webhook_id})
        assert done.status_code == 303, done.text
        await receiver.wait_for(lambda: receiver.requests[webhook_id] == 2, 30, "replayed")
        shown = await client.get(done.headers["location"])
        assert f"Message {webhook_id} replayed." in shown.text

    # The first success (written on its message) became an attempt row at the replay: the
    # log keeps both successes, oldest first.
    listing = f"/api/v1/webhooks/endpoints/{endpoint_id}/messages/"

    async def both_logged() -> bool:
        [m] = (await system.gateway.get(listing)).json()["data"]
        return m["state"] == "delivered" and len(m["attempt_log"]) == 2

    await wait_for_condition(both_logged, timeout_s=30, what="the replay's outcome recorded")
    [m] = (await system.gateway.get(listing)).json()["data"]
    assert [a["status_code"] for a in m["attempt_log"]] == [200, 200], m
    assert m["attempt_log"][0]["at"] < m["attempt_log"][1]["at"]
