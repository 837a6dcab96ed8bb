"""Mailgun's signed event webhook: a genuine event updates the notification; a forged, stale
or replayed one is refused and changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest

from tests.helpers import assert_envelope
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System

SIGNING_KEY = "key-test-0123456789abcdef"
URL = "/api/v1/webhooks/mailgun/"


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, Any]:
    return {"mailgun_webhook_signing_key": SIGNING_KEY}


def signed(
    event: dict[str, Any], *, key: str = SIGNING_KEY, at: float | None = None
) -> dict[str, Any]:
    timestamp = str(int(at if at is not None else time.time()))
    token = uuid.uuid4().hex
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event,
    }


async def delivered_notification(system: System) -> tuple[dict[str, Any], str]:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    nid = (
        await gw.post(
            "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
        )
    ).json()["data"]["notification_id"]
    await wait_for_status(gw, nid, "delivered")
    return user, nid


def event(kind: str, nid: str, recipient: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": kind,
        "recipient": recipient,
        "message": {"headers": {"message-id": f"{nid}@tidings.localhost"}},
        **extra,
    }


async def test_genuine_events_update_forged_ones_are_refused(system: System) -> None:
    gw = system.gateway
    user, nid = await delivered_notification(system)
    genuine = signed(
        event(
            "delivered", nid, user["email"], **{"delivery-status": {"code": 250, "message": "OK"}}
        )
    )
    answer = await gw.post(URL, json=genuine, headers={})
    assert answer.status_code == 200, answer.text
    history = (await gw.get(f"/api/v1/notifications/{nid}/")).json()["data"]["history"]
    assert history[-1]["detail"] == "provider: delivered 250 OK"

    replayed = await gw.post(URL, json=genuine, headers={})
    assert replayed.status_code == 401 and "replay" in replayed.json()["error"]
    forged = signed(event("failed", nid, user["email"], severity="permanent"), key="not-the-key")
    stale = signed(event("failed", nid, user["email"], severity="permanent"), at=time.time() - 3600)
    for bad in (forged, stale):
        refused = await gw.post(URL, json=bad, headers={})
        assert refused.status_code == 401
        assert_envelope(refused.json(), success=False)
    got = (await gw.get(f"/api/v1/notifications/{nid}/")).json()["data"]
    assert got["status"] == "delivered" and len(got["history"]) == len(history)


async def test_a_permanent_failure_bounces_and_suppresses(system: System) -> None:
    gw = system.gateway
    user, nid = await delivered_notification(system)
    bounce = signed(
        event(
            "failed",
            nid,
            user["email"],
            severity="permanent",
            **{"delivery-status": {"code": 550, "message": "mailbox does not exist"}},
        )
    )
    assert (await gw.post(URL, json=bounce, headers={})).status_code == 200
    got = (await gw.get(f"/api/v1/notifications/{nid}/")).json()["data"]
    assert got["status"] == "failed" and got["error"].startswith("bounced: 550")
    rows = (await gw.get("/api/v1/admin/suppressions/", params={"limit": 100})).json()["data"]
    assert user["email"].lower() in {r["address"] for r in rows}


async def test_a_complaint_turns_the_preference_off(system: System) -> None:
    gw = system.gateway
    user, nid = await delivered_notification(system)
    assert (
        await gw.post(URL, json=signed(event("complained", nid, user["email"])), headers={})
    ).status_code == 200
    me = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]
    assert me["preferences"]["email"] is False


@pytest.mark.parametrize(
    ("field", "escaped"),
    [
        ("timestamp", "\\ud800"),
        ("token", "\\ud800"),
        ("signature", "\\ud800"),
        ("signature", "\\uda38\\udc3a"),  # a pair: one character past the BMP
    ],
)
async def test_a_signature_the_hmac_cannot_take_is_422(
    system: System, field: str, escaped: str
) -> None:
    """Found by the fuzzer (issue 13): a lone surrogate could not be encoded for the HMAC,
    and compare_digest refuses non-ASCII strings; each answered 500."""
    body = signed({"event": "delivered"})
    body["signature"][field] = "PLACEHOLDER" + "0" * 10
    raw = json.dumps(body).replace("PLACEHOLDER", escaped).encode()
    answer = await system.gateway.post(
        URL, content=raw, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert_envelope(answer.json(), success=False)
    assert field in answer.json()["error"]


async def test_an_event_naming_another_address_follows_the_bounce_receivers_rule(
    system: System,
) -> None:
    """A defect fix: the webhook suppressed whatever ``recipient`` Mailgun sent. Now the rule
    of the bounce receiver's reports (gateway.feedback) holds: a bounce naming another
    address than the notification's fails it and suppresses nothing; a complaint is about
    the user, whatever address it names: theirs is suppressed, never the one named."""
    gw = system.gateway

    async def suppressed() -> set[str]:
        rows = (await gw.get("/api/v1/admin/suppressions/", params={"limit": 100})).json()
        return {r["address"] for r in rows["data"]}

    user, nid = await delivered_notification(system)
    bystander = f"bystander-{uuid.uuid4().hex[:8]}@example.org"
    bounce = signed(
        event(
            "failed",
            nid,
            bystander,
            severity="permanent",
            **{"delivery-status": {"code": 550, "message": "mailbox does not exist"}},
        )
    )
    assert (await gw.post(URL, json=bounce, headers={})).status_code == 200
    got = (await gw.get(f"/api/v1/notifications/{nid}/")).json()["data"]
    assert got["status"] == "failed" and got["error"].startswith("bounced: 550")
    assert {bystander, user["email"].lower()}.isdisjoint(await suppressed())

    user, nid = await delivered_notification(system)
    complaint = signed(event("complained", nid, bystander))
    assert (await gw.post(URL, json=complaint, headers={})).status_code == 200
    now = await suppressed()
    assert user["email"].lower() in now and bystander not in now
    me = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]
    assert me["preferences"]["email"] is False


async def test_an_event_that_met_an_outage_is_taken_when_mailgun_sends_it_again(
    system: System,
) -> None:
    """The token is taken only by an event that was handled: one answered 503 (the users
    service away) is not refused as a replay when Mailgun retries it, so it is not lost."""
    gw = system.gateway
    user, nid = await delivered_notification(system)
    complaint = signed(event("complained", nid, user["email"]))
    await system.stop_service("users")
    try:
        during = await gw.post(URL, json=complaint, headers={})
        assert during.status_code == 503, during.text
        assert_envelope(during.json(), success=False)
    finally:
        await system.start_service("users")
    again = await gw.post(URL, json=complaint, headers={})
    assert again.status_code == 200, again.text
    me = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]
    assert me["preferences"]["email"] is False
    replayed = await gw.post(URL, json=complaint, headers={})
    assert replayed.status_code == 401 and "replay" in replayed.json()["error"]
