"""A transactional notification sent during a broadcast is not behind it: it travels in the
normal queue while the broadcast's wait in the bulk lane. Its time to delivered is measured
on an idle system and during the broadcast, and printed (never asserted as a speed); what is
asserted is that it overtook the broadcast's backlog."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.broadcasts.support import broadcast_body, make_topic, seed_users, wait_progress
from tests.faults.conftest import Start
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System


async def _one(system: System, user: dict[str, Any], template: str) -> tuple[float, float]:
    """Seconds from the request to the SMTP server's taking the message, and to the
    gateway's recording it delivered."""
    gw = system.gateway
    started = time.monotonic()
    answer = await gw.post("/api/v1/notifications/", json=notification(user["user_id"], template))
    assert answer.status_code == 202, answer.text
    while (await system.smtp.next(120)).rcpt_tos != [user["email"]]:
        pass
    at_server = time.monotonic() - started
    found = await wait_for_status(gw, answer.json()["data"]["notification_id"], "delivered", 120)
    print("history:", [(h["status"], h["timestamp"][11:23]) for h in found["history"]])
    return at_server, time.monotonic() - started


async def _run(make_system: Start, database_url: str, n: int) -> None:
    system = await make_system()
    gw = system.gateway
    tag = f"lane-{uuid.uuid4().hex[:6]}"
    key = f"topic-{tag}"
    await make_topic(gw, key, await seed_users(database_url, n, tag))
    template = (await create_template(gw))["code"]
    user = await create_user(gw)
    idle = min([await _one(system, user, template) for _ in range(3)])

    answer = await gw.post("/api/v1/broadcasts/", json=broadcast_body(key, template))
    broadcast_id = answer.json()["data"]["broadcast_id"]
    await wait_progress(
        gw, broadcast_id, lambda p: p["pending"] >= n // 4, timeout_s=120, what="a backlog"
    )
    during = await _one(system, user, template)
    at = (await gw.get(f"/api/v1/broadcasts/{broadcast_id}/")).json()["data"]
    print(
        f"a transactional notification with {n} in the broadcast, at the SMTP server / "
        f"recorded delivered: idle {idle[0] * 1000:.0f} / {idle[1] * 1000:.0f} ms, during "
        f"the broadcast {during[0] * 1000:.0f} / {during[1] * 1000:.0f} ms, with "
        f"{at['pending']} of it still pending (busy machine)"
    )
    assert at["pending"] > 0, "delivered only after the broadcast: behind it"
    await wait_progress(
        gw, broadcast_id, lambda p: p["delivered"] == n, timeout_s=60 + n / 20, what="all"
    )


async def test_a_transactional_send_overtakes_a_broadcast(
    make_system: Start, fresh_pg: str
) -> None:
    await _run(make_system, fresh_pg, 2_000)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_transactional_send_overtakes_a_10000_broadcast(
    make_system: Start, fresh_pg: str
) -> None:
    await _run(make_system, fresh_pg, 10_000)
