"""Batches, scheduled and cancelled notifications, and the priority lane."""

from __future__ import annotations

import asyncio
import datetime as dt

from tests.helpers import assert_envelope, wait_for_condition
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System
from tidings.core.settings import TidingsSettings

URL = "/api/v1/notifications/"
BATCH = "/api/v1/notifications/batch/"
PREFETCH = TidingsSettings.model_fields["prefetch"].default


async def test_a_batch_of_1000_with_valid_invalid_and_duplicate_items(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    muted = await create_user(gw, preferences={"email": False, "push": False})
    template = await create_template(gw)
    earlier = notification(user["user_id"], template["code"])
    assert (await gw.post(URL, json=earlier)).status_code == 202
    items = []
    for i in range(1000):
        body = notification(
            user["user_id"], template["code"], request_id=f"{earlier['request_id']}-{i}"
        )
        if i % 10 == 1:
            body["variables"] = {"name": "x", "link": "ftp://nope"}  # invalid
        elif i % 10 == 2:
            body = items[-2]  # the same item again: a duplicate within the batch
        elif i % 10 == 3:
            body = {**items[-3], "priority": 9}  # its request_id with another body
        elif i == 4:
            body = earlier  # already sent
        elif i == 5:
            body = notification(muted["user_id"], template["code"], request_id=f"muted-{i}")
        elif i == 6:
            body = {"user_id": "not even close"}
        items.append(body)
    answer = await gw.post(BATCH, json={"notifications": items})
    assert answer.status_code == 202, answer.text[:500]
    results = answer.json()["data"]
    assert [r["index"] for r in results] == list(range(1000))
    by = {r["index"]: r for r in results}
    assert by[0]["outcome"] == "accepted" and by[0]["status"] == "pending"
    assert by[1]["outcome"] == "rejected" and "variables.link" in by[1]["error"]
    assert by[2]["outcome"] == "duplicate"
    assert by[2]["notification_id"] == by[0]["notification_id"]
    assert by[3]["outcome"] == "rejected" and "different body" in by[3]["error"]
    assert by[4]["outcome"] == "duplicate"
    assert by[5]["outcome"] == "accepted" and by[5]["status"] == "skipped"
    assert by[6]["outcome"] == "rejected"
    accepted = [r for r in results if r["outcome"] == "accepted"]
    assert answer.json()["message"].startswith(f"{len(accepted)} accepted")
    # every accepted one is stored and listed; none of the rejected ones
    for r in accepted[:20]:
        got = await gw.get(f"{URL}{r['notification_id']}/")
        assert got.status_code == 200
    stored = await gw.get(URL, params={"template_code": template["code"], "limit": 1})
    assert stored.json()["meta"]["total"] == len(accepted) + 1  # and the earlier one
    # the same batch again: all accepted ones are now duplicates, nothing new
    again = (await gw.post(BATCH, json={"notifications": items})).json()["data"]
    assert all(r["outcome"] != "accepted" for r in again)

    too_many = await gw.post(BATCH, json={"notifications": [*items, items[0]]})
    assert too_many.status_code == 422
    assert_envelope(too_many.json(), success=False)
    assert "notifications" in too_many.json()["error"]


async def test_scheduled_waits_and_cancelled_never_goes(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    scheduled = notification(user["user_id"], template["code"], send_at=later.isoformat())
    cancelled = notification(user["user_id"], template["code"], send_at=later.isoformat())
    first = (await gw.post(URL, json=scheduled)).json()["data"]
    second = (await gw.post(URL, json=cancelled)).json()["data"]
    assert first["status"] == second["status"] == "pending", "the first answer: accepted"
    got = (await gw.get(f"{URL}{first['notification_id']}/")).json()["data"]
    assert got["status"] == "scheduled"
    gone = await gw.delete(f"{URL}{second['notification_id']}/")
    assert gone.status_code == 200, gone.text
    assert gone.json()["data"]["status"] == "cancelled"
    again = await gw.delete(f"{URL}{second['notification_id']}/")
    assert again.status_code == 409

    async def arrival_of(request_id: str) -> None:
        """Mail of earlier tests may still be arriving; the cancelled one never may."""
        while True:
            got = str((await system.smtp.next(timeout_s=30)).message["X-Request-ID"])
            assert got != cancelled["request_id"], "a cancelled notification was sent"
            if got == request_id:
                return

    await arrival_of(scheduled["request_id"])
    assert dt.datetime.now(dt.UTC) >= later, "delivered before send_at"
    await wait_for_status(gw, first["notification_id"], "delivered")
    # Fence: a plain notification after it; the cancelled one never arrives.
    fence = notification(user["user_id"], template["code"])
    await gw.post(URL, json=fence)
    await arrival_of(fence["request_id"])
    assert (await gw.get(f"{URL}{second['notification_id']}/")).json()["data"][
        "status"
    ] == "cancelled"
    late = await gw.delete(f"{URL}{first['notification_id']}/")
    assert late.status_code == 409 and "already" in late.json()["error"]


async def test_a_high_priority_notification_overtakes_a_backlog(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    smtp = system.smtp
    smtp.gate, smtp.hold_after = asyncio.Event(), len(smtp.received)  # hold from now on
    # A backlog of twice what the worker takes at once (its prefetch, in notifications) and
    # more: the high one overtakes what is still queued, not what the worker holds.
    lows = [
        notification(user["user_id"], template["code"], priority=1)
        for _ in range(2 * PREFETCH + 100)
    ]
    for at in range(0, len(lows), 100):
        answer = await gw.post(BATCH, json={"notifications": lows[at : at + 100]})
        assert answer.status_code == 202

    async def backlog() -> bool:
        return smtp.held >= 1

    await wait_for_condition(backlog, timeout_s=30, what="a backlog held at the server")
    high = notification(user["user_id"], template["code"], priority=9)
    high_id = (await gw.post(URL, json=high)).json()["data"]["notification_id"]

    async def published() -> bool:
        history = (await gw.get(f"{URL}{high_id}/")).json()["data"]["history"]
        return any(e["status"] == "queued" for e in history)

    await wait_for_condition(published, timeout_s=30, what="the high one published")
    start = len(smtp.received)
    smtp.gate.set()
    await wait_for_status(gw, high_id, "delivered", timeout_s=60)
    order = [str(r.message["X-Request-ID"]) for r in smtp.received[start:]]
    position = order.index(high["request_id"])
    print(f"the high-priority notification arrived {position + 1}th of {len(lows) + 1}")
    # Ahead of it: at most what the worker had already taken (its prefetch, and the
    # batch a message carries); not the backlog still queued behind that.
    assert position < PREFETCH + TidingsSettings.model_fields["work_batch"].default, position
    smtp.gate, smtp.hold_after = None, 0

    # Let the backlog drain, so the module's services stop with nothing in flight.
    async def drained() -> bool:
        listed = await gw.get(
            URL, params={"template_code": template["code"], "status": "delivered", "limit": 1}
        )
        return bool(listed.json()["meta"]["total"] == len(lows) + 1)

    await wait_for_condition(drained, timeout_s=90, what="the backlog delivered")


async def test_single_requests_and_batches_racing_for_request_ids_make_one_each(
    system: System,
) -> None:
    """One accept path for one and for many: single requests and batches sent at once with
    the same request ids write each notification once (ON CONFLICT, no retry of the whole
    batch), and every answer names that one notification."""
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    bodies = [notification(user["user_id"], template["code"]) for _ in range(20)]
    answers = await asyncio.gather(
        *(gw.post(URL, json=b) for b in bodies),
        gw.post(BATCH, json={"notifications": bodies}),
        gw.post(BATCH, json={"notifications": bodies[::-1]}),
    )
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    singles, batches = answers[:20], answers[20:]
    ids = {
        b["request_id"]: a.json()["data"]["notification_id"]
        for b, a in zip(bodies, singles, strict=True)
    }
    for batch in batches:
        for item in batch.json()["data"]:
            assert item["outcome"] in ("accepted", "duplicate"), item
            assert item["notification_id"] == ids[item["request_id"]], item
    accepted = [a for a in singles if not a.json()["message"].startswith("duplicate")]
    accepted_in_batches = sum(
        item["outcome"] == "accepted" for batch in batches for item in batch.json()["data"]
    )
    assert len(accepted) + accepted_in_batches == 20, "each request id written once"
