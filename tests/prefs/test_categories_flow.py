"""Preferences per category and channel through the whole path (real PostgreSQL, RabbitMQ,
Redis and an SMTP peer): a category off is skipped with the rule named, a critical one
cannot be turned off, one-click unsubscribe turns off that category only."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.helpers import assert_envelope
from tests.prefs.conftest import categorised_template, create_category, history_details
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System

URL = "/api/v1/notifications/"


async def arrival_of(system: System, request_id: str) -> httpx.Headers | object:
    """The email with this X-Request-ID; any other arriving first must not be one we wait
    never to see (the callers' fences make sure)."""
    while True:
        received = await system.smtp.next(timeout_s=30)
        if str(received.message["X-Request-ID"]) == request_id:
            return received.message


async def test_marketing_off_is_skipped_with_the_rule_and_security_still_goes(
    system: System,
) -> None:
    gw = system.gateway
    marketing = await create_category(gw, "marketing")
    security = await create_category(gw, "security", critical=True)
    offers = await categorised_template(gw, marketing["key"])
    resets = await categorised_template(gw, security["key"])
    user = await create_user(
        gw,
        preferences={
            "email": True,
            "push": True,
            "categories": {marketing["key"]: {"email": False}},
        },
    )
    assert user["preferences"]["categories"] == {marketing["key"]: {"email": False}}

    skipped = await gw.post(URL, json=notification(user["user_id"], offers["code"]))
    assert skipped.status_code == 202, skipped.text
    assert skipped.json()["data"]["status"] == "skipped"
    found = await wait_for_status(gw, skipped.json()["data"]["notification_id"], "skipped")
    assert history_details(found) == [f"the user's email preference for {marketing['key']} is off"]

    body = notification(user["user_id"], resets["code"])
    sent = await gw.post(URL, json=body)
    assert sent.json()["data"]["status"] == "pending"
    message = await arrival_of(system, body["request_id"])
    # A critical category's email is not a list: no unsubscribe, the preference centre only.
    assert message["List-Unsubscribe"] is None  # type: ignore[index]
    await wait_for_status(gw, sent.json()["data"]["notification_id"], "delivered")


async def test_a_critical_category_cannot_be_turned_off(system: System) -> None:
    gw = system.gateway
    security = await create_category(gw, "security", critical=True)
    user = await create_user(gw)
    refused = await gw.patch(
        f"/api/v1/users/{user['user_id']}/",
        json={"preferences": {"categories": {security["key"]: {"email": False}}}},
    )
    assert refused.status_code == 422, refused.text
    assert_envelope(refused.json(), success=False)
    assert security["key"] in refused.json()["error"] and "critical" in refused.json()["error"]
    unchanged = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]
    assert unchanged["preferences"] == {"email": True, "push": True}
    at_creation = await gw.post(
        "/api/v1/users/",
        json={
            "name": "Mallory",
            "email": f"m-{uuid.uuid4().hex[:8]}@example.com",
            "preferences": {
                "email": True,
                "push": True,
                "categories": {security["key"]: {"push": False}},
            },
            "password": "a long enough password",
        },
    )
    assert at_creation.status_code == 422, at_creation.text
    # A category that is not critical can be.
    other = await create_category(gw, "product")
    fine = await gw.patch(
        f"/api/v1/users/{user['user_id']}/",
        json={"preferences": {"categories": {other["key"]: {"email": False}}}},
    )
    assert fine.status_code == 200, fine.text


async def test_unsubscribe_from_a_marketing_email_leaves_product_mail_on(system: System) -> None:
    gw = system.gateway
    marketing = await create_category(gw, "marketing")
    product = await create_category(gw, "product")
    offers = await categorised_template(gw, marketing["key"])
    updates = await categorised_template(gw, product["key"])
    user = await create_user(gw)

    first = notification(user["user_id"], offers["code"])
    await gw.post(URL, json=first)
    message = await arrival_of(system, first["request_id"])
    header = str(message["List-Unsubscribe"])  # type: ignore[index]
    link = re.search(r"<(http[^>]+/unsubscribe/[^>]+)>", header)
    assert link is not None, header
    async with httpx.AsyncClient(timeout=10) as mail_client:
        page = await mail_client.get(link.group(1))  # what a click shows: nothing changes
        assert f"Stop receiving {marketing['key']} emails?" in page.text
        clicked = await mail_client.post(link.group(1), content=b"List-Unsubscribe=One-Click")
    assert clicked.status_code == 200, clicked.text
    assert clicked.json()["data"]["category"] == marketing["key"]

    prefs = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]["preferences"]
    assert prefs == {
        "email": True,
        "push": True,
        "categories": {marketing["key"]: {"email": False}},
    }

    again = await gw.post(URL, json=notification(user["user_id"], offers["code"]))
    assert again.json()["data"]["status"] == "skipped"
    wanted = notification(user["user_id"], updates["code"])
    kept = await gw.post(URL, json=wanted)
    assert kept.json()["data"]["status"] == "pending"
    await arrival_of(system, wanted["request_id"])
    await wait_for_status(gw, kept.json()["data"]["notification_id"], "delivered")


async def test_a_template_without_a_category_and_a_spec_user_behave_as_before(
    system: System,
) -> None:
    gw = system.gateway
    template = await create_template(gw)
    assert template["category"] is None and template["critical"] is False
    user = await create_user(gw, preferences={"email": False, "push": True})
    assert user["preferences"] == {"email": False, "push": True}
    assert user["time_zone"] is None and user["quiet_hours"] is None
    off = await gw.post(URL, json=notification(user["user_id"], template["code"]))
    found = await wait_for_status(gw, off.json()["data"]["notification_id"], "skipped")
    assert history_details(found) == ["the user's email preference is off"]
