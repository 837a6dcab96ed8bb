"""The email path through the real services, in process, on the real infrastructure."""

from __future__ import annotations

import asyncio
import uuid

from tests.helpers import assert_envelope
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System


async def test_email_is_rendered_sent_and_delivered(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw, name="Grace Hopper")
    template = await create_template(gw)
    body = notification(user["user_id"], template["code"])
    answer = await gw.post(
        "/api/v1/notifications/", json=body, headers={"X-Correlation-ID": "corr-flow-1"}
    )
    assert answer.status_code == 202, answer.text
    assert_envelope(answer.json(), success=True)
    accepted = answer.json()["data"]
    assert accepted["status"] == "pending"
    assert accepted["request_id"] == body["request_id"]
    assert accepted["notification_type"] == "email"
    nid = accepted["notification_id"]

    received = await system.smtp.next()
    msg = received.message
    assert received.rcpt_tos == [user["email"]]
    assert msg["Subject"] == "Welcome, Grace!"
    assert msg["Message-ID"] == f"<{nid}@tidings.localhost>"
    assert msg["X-Request-ID"] == body["request_id"]
    assert msg["X-Correlation-ID"] == "corr-flow-1"
    text, footer = msg.get_body(("plain",)).get_content().replace("\r\n", "\n").split("\n--\n")
    assert text.strip() == "Hello Grace, start here: https://example.com/start?x=1"
    assert "/preferences/" in footer  # the preference centre's signed link
    html = msg.get_body(("html",)).get_content()
    assert "<h1>Hello Grace</h1>" in html and 'href="https://example.com/start?x=1"' in html

    done = await wait_for_status(gw, nid, "delivered")
    assert [h["status"] for h in done["history"]] == ["pending", "queued", "delivered"]
    assert done["metadata"] == {"campaign": "test"}


async def test_same_request_id_sends_once_and_conflicting_body_is_409(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    body = notification(user["user_id"], template["code"])
    first = await gw.post("/api/v1/notifications/", json=body)
    again = await gw.post("/api/v1/notifications/", json=body)
    assert first.status_code == again.status_code == 202
    assert again.json()["data"]["notification_id"] == first.json()["data"]["notification_id"]
    assert "duplicate" in again.json()["message"]

    conflicting = await gw.post(
        "/api/v1/notifications/", json={**body, "variables": {**body["variables"], "name": "X"}}
    )
    assert conflicting.status_code == 409
    assert_envelope(conflicting.json(), success=False)
    assert body["request_id"] in conflicting.json()["error"]

    # Concurrent repeats race on the unique request_id; all get the same answer.
    racing = await asyncio.gather(
        *(
            gw.post(
                "/api/v1/notifications/", json={**body, "request_id": "race-" + body["request_id"]}
            )
            for _ in range(8)
        )
    )
    assert {r.status_code for r in racing} == {202}
    assert len({r.json()["data"]["notification_id"] for r in racing}) == 1

    # Fence: a third, distinct notification; when it has arrived, count every message.
    fence = notification(user["user_id"], template["code"])
    assert (await gw.post("/api/v1/notifications/", json=fence)).status_code == 202
    arrived = [await system.smtp.next() for _ in range(3)]
    request_ids = sorted(r.message["X-Request-ID"] for r in arrived)
    assert request_ids == sorted(
        [body["request_id"], "race-" + body["request_id"], fence["request_id"]]
    )
    assert system.smtp.arrivals.empty()


async def test_preference_off_is_skipped_and_nothing_is_sent(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw, preferences={"email": False, "push": True})
    template = await create_template(gw)
    answer = await gw.post(
        "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
    )
    assert answer.status_code == 202
    data = answer.json()["data"]
    assert data["status"] == "skipped"
    got = (await gw.get(f"/api/v1/notifications/{data['notification_id']}/")).json()["data"]
    assert got["history"][0]["detail"] == "the user's email preference is off"
    # After a fence notification arrives, nothing else has.
    other = await create_user(gw)
    fence = notification(other["user_id"], template["code"])
    assert (await gw.post("/api/v1/notifications/", json=fence)).status_code == 202
    assert (await system.smtp.next()).message["X-Request-ID"] == fence["request_id"]
    assert system.smtp.arrivals.empty()


async def test_preference_change_through_the_gateway_applies_at_once(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    first = await gw.post(
        "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
    )
    assert first.json()["data"]["status"] == "pending"  # the user is now cached
    patched = await gw.patch(
        f"/api/v1/users/{user['user_id']}", json={"preferences": {"email": False}}
    )  # no trailing slash: the gateway adds it
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["preferences"] == {"email": False, "push": True}
    second = await gw.post(
        "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
    )
    assert second.json()["data"]["status"] == "skipped"
    await wait_for_status(gw, first.json()["data"]["notification_id"], "delivered")
    assert (await system.smtp.next()).message["X-Request-ID"] == first.json()["data"]["request_id"]


async def test_a_template_that_fails_at_render_time_fails_with_the_reason(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw, body="<p>{{ 1 / 0 }}</p>")
    nid = (
        await gw.post(
            "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
        )
    ).json()["data"]["notification_id"]
    failed = await wait_for_status(gw, nid, "failed")
    assert "permanent" in failed["error"] and "ZeroDivisionError" in failed["error"]


async def test_status_endpoint_records_history(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw, preferences={"email": False, "push": False})
    template = await create_template(gw)
    nid = (
        await gw.post(
            "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
        )
    ).json()["data"]["notification_id"]
    # skipped is final: a report is kept in the history but does not move the status
    answer = await gw.post(
        "/api/v1/email/status/",
        json={"notification_id": nid, "status": "failed", "timestamp": None, "error": "late"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {"notification_id": nid, "status": "skipped"}
    got = (await gw.get(f"/api/v1/notifications/{nid}/")).json()["data"]
    assert got["history"][-1]["status"] == "failed" and got["history"][-1]["error"] == "late"

    wrong_channel = await gw.post(
        "/api/v1/push/status/", json={"notification_id": nid, "status": "delivered"}
    )
    assert wrong_channel.status_code == 409
    unknown = await gw.post(
        "/api/v1/email/status/", json={"notification_id": str(uuid.uuid4()), "status": "delivered"}
    )
    assert unknown.status_code == 404
    naive = await gw.post(
        "/api/v1/email/status/",
        json={"notification_id": nid, "status": "pending", "timestamp": "2026-01-01T00:00:00"},
    )
    assert naive.status_code == 200, naive.text  # a timestamp without a zone is UTC
    bad = await gw.post("/api/v1/email/status/", json={"notification_id": nid, "status": "sent"})
    assert bad.status_code == 422
    for response in (wrong_channel, unknown, bad):
        assert_envelope(response.json(), success=False)


async def test_unknown_user_or_template_is_404_and_stores_nothing(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    no_user = notification(str(uuid.uuid4()), template["code"])
    no_template = notification(user["user_id"], "no-such-template")
    for body in (no_user, no_template):
        answer = await gw.post("/api/v1/notifications/", json=body)
        assert answer.status_code == 404, answer.text
        assert_envelope(answer.json(), success=False)
        # nothing stored: the request_id is still free for a correct request
        fixed = {**body, "user_id": user["user_id"], "template_code": template["code"]}
        assert (await gw.post("/api/v1/notifications/", json=fixed)).json()["message"] == (
            "notification accepted"
        )
    for _ in range(2):
        await system.smtp.next()


async def test_concurrent_requests_share_transactions_and_each_is_written_once(
    system: System,
) -> None:
    """Group commit: 40 concurrent requests (30 distinct, 5 repeated with the same body,
    5 reusing a request id with another body) go in fewer transactions than requests, and
    every notification has exactly one message and one history of its own."""
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    service = system.apps["gateway"].state.gateway.acceptance
    bodies = [notification(user["user_id"], template["code"]) for _ in range(30)]
    repeats = [dict(b) for b in bodies[:5]]
    clashes = [{**b, "variables": {**b["variables"], "name": "Other"}} for b in bodies[5:10]]
    before = service._writes.batches
    answers = await asyncio.gather(
        *(gw.post("/api/v1/notifications/", json=b) for b in [*bodies, *repeats, *clashes])
    )
    created, repeated, clashed = answers[:30], answers[30:35], answers[35:]
    assert all(a.status_code == 202 for a in [*created[10:], *repeated]), [a.text for a in answers]
    # A repeat is the same notification, whichever of the two requests came first.
    for first, again in zip(created[:5], repeated, strict=True):
        assert first.status_code == again.status_code == 202
        assert first.json()["data"]["notification_id"] == again.json()["data"]["notification_id"]
    # Of two bodies with one request id, one won and the other is a 409.
    winners = []
    for a, b in zip(created[5:10], clashed, strict=True):
        assert sorted([a.status_code, b.status_code]) == [202, 409], (a.text, b.text)
        winners.append(a if a.status_code == 202 else b)
    ids = {a.json()["data"]["notification_id"] for a in [*created[:5], *winners, *created[10:]]}
    assert len(ids) == 30
    writes = service._writes.batches - before
    assert 0 < writes < 30, f"{writes} write transactions for 40 concurrent requests"

    arrived = [await system.smtp.next() for _ in range(30)]
    assert sorted(r.message["X-Request-ID"] for r in arrived) == sorted(
        b["request_id"] for b in bodies
    )
    for nid in ids:
        done = await wait_for_status(gw, nid, "delivered")
        assert [h["status"] for h in done["history"]] == ["pending", "queued", "delivered"]
    assert system.smtp.arrivals.empty()


async def test_an_integer_past_64_bits_in_variables_is_refused_and_nothing_is_written(
    system: System,
) -> None:
    """The workers cannot carry an integer past the signed 64-bit range (orjson refuses it),
    so the gateway refuses it first (core.limits), saying which bound, and writes nothing: a
    corrected request with the same request_id is then accepted as the first."""
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    body = notification(
        user["user_id"],
        template["code"],
        variables={"name": "Grace", "link": "https://example.com/", "count": 10**30},
    )
    refused = await gw.post("/api/v1/notifications/", json=body)
    assert refused.status_code == 422, refused.text
    assert "64-bit" in refused.json()["error"]
    body["variables"]["count"] = 2**63 - 1
    first = await gw.post("/api/v1/notifications/", json=body)
    assert first.status_code == 202, first.text
    nid = first.json()["data"]["notification_id"]
    await wait_for_status(gw, nid, "delivered")
    received = await system.smtp.next()
    assert received.message["X-Request-ID"] == body["request_id"]
