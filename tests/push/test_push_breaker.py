"""An unreachable push service opens its webpush breaker: notifications wait, none is
dropped, and each arrives exactly once when the service is back."""

from __future__ import annotations

import asyncio

from tests.helpers import wait_for_condition
from tests.push.conftest import PushWorld
from tests.push.support import add_webpush, final_status, push_template, push_user, send_push

COUNT = 8


async def test_an_open_breaker_delays_and_never_drops(world: PushWorld) -> None:
    gw, receiver = world.system.gateway, world.webpush
    code = await push_template(gw)
    user_id = await push_user(gw)
    device = receiver.subscribe()
    await add_webpush(gw, user_id, device)

    await receiver.close()  # connections refused from now on
    ids = [await send_push(gw, user_id, code) for _ in range(COUNT)]

    async def breaker_opened() -> bool:
        for nid in ids:
            data = (await gw.get(f"/api/v1/notifications/{nid}/")).json()["data"]
            if any("circuit breaker is open" in (h["detail"] or "") for h in data["history"]):
                return True
        return False

    await wait_for_condition(breaker_opened, timeout_s=30, what="the webpush breaker open")
    health = await gw.get(f"http://127.0.0.1:{world.system.ports['push']}/health")
    # One push service down does not make the worker degraded; /health names it, shortly.
    assert health.status_code == 200
    origin = receiver.server.origin
    assert f"1 of 1 origins open: {origin}" in health.json()["data"]["webpush_open_origins"]
    await receiver.server.start()  # back, on the same port

    finals = await asyncio.gather(*(final_status(gw, nid, timeout_s=60) for nid in ids))
    assert [f["status"] for f in finals] == ["delivered"] * COUNT, finals
    got = [p.message["data"]["notification_id"] for p in receiver.received_by(device)]
    assert sorted(got) == sorted(ids), "a notification was lost or delivered twice"
    assert not receiver.problems
