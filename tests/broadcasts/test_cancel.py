"""Cancel mid-way, with the notifications already queued and being sent (paced by the SMTP
rate limit): nothing reaches the server after the cancel took effect, save the SMTP dialogues
already under way, and the counts say how many went."""

from __future__ import annotations

import uuid

from tests.broadcasts.support import (
    broadcast_body,
    make_topic,
    received_by,
    seed_users,
    wait_progress,
    withdrawn,
)
from tests.faults.conftest import Start
from tests.faults.harness import wait_quiet
from tests.helpers import wait_for_condition
from tests.scenario import create_template

N = 2_000
POOL = 4
PAGE = 500  # TIDINGS_BROADCAST_PAGE_SIZE's default


async def test_cancel_mid_way_sends_nothing_after(
    make_system: Start, fresh_pg: str, fresh_vhost: str
) -> None:
    system = await make_system(smtp_rate_per_s=40, smtp_pool_size=POOL)
    gw = system.gateway
    tag = f"cancel-{uuid.uuid4().hex[:6]}"
    key = f"topic-{tag}"
    await make_topic(gw, key, await seed_users(fresh_pg, N, tag))
    template = await create_template(gw)
    answer = await gw.post("/api/v1/broadcasts/", json=broadcast_body(key, template["code"]))
    broadcast_id = answer.json()["data"]["broadcast_id"]

    async def some_sent() -> bool:
        return len(received_by(system.smtp, tag)) >= 100

    await wait_for_condition(some_sent, timeout_s=120, what="100 sent")
    # The fan-out may be done by now (it outpaces 40 a second); two pages or more still to
    # make, it cannot finish before the cancel below takes effect.
    before = (await gw.get(f"/api/v1/broadcasts/{broadcast_id}/")).json()["data"]
    cancelled = await gw.delete(f"/api/v1/broadcasts/{broadcast_id}/")
    assert cancelled.status_code == 200, cancelled.text
    sent_at_cancel = sum(received_by(system.smtp, tag).values())

    final = await wait_progress(gw, broadcast_id, withdrawn, timeout_s=120, what="nothing pending")
    await wait_quiet(fresh_vhost)
    got = received_by(system.smtp, tag)
    print(
        f"cancel after {sent_at_cancel} sent, {before['created']} made: {final}; "
        f"the server took {sum(got.values())}"
    )
    assert set(got.values()) == {1}, got.most_common(3)
    # Only the dialogues under way as the cancel came may still have ended at the server.
    assert sum(got.values()) - sent_at_cancel <= POOL
    assert final["delivered"] == sum(got.values())
    if before["created"] <= N - 2 * PAGE:
        assert final["created"] < N, "the fan-out went on after the cancel"
    went = final["delivered"] + final["skipped"] + final["cancelled"] + final["failed"]
    assert went == final["created"] and final["failed"] == 0, final
