"""The List-Unsubscribe mailto: of a categorised email (to the email worker's bounce
receiver) turns off that category only: the gateway finds it from the notification's
template."""

from __future__ import annotations

from tests.email.conftest import bounce_port, system  # noqa: F401  (the fixtures)
from tests.email.test_bounces import _report
from tests.helpers import wait_for_condition
from tests.prefs.conftest import categorised_template, create_category
from tests.scenario import create_user, notification, wait_for_status
from tests.system import System

URL = "/api/v1/notifications/"


async def test_the_mailto_unsubscribe_turns_off_that_category_only(system: System) -> None:  # noqa: F811
    gw = system.gateway
    marketing = await create_category(gw, "marketing")
    offers = await categorised_template(gw, marketing["key"])
    user = await create_user(gw)
    body = notification(user["user_id"], offers["code"])
    nid = (await gw.post(URL, json=body)).json()["data"]["notification_id"]
    await wait_for_status(gw, nid, "delivered")
    [received] = [
        r for r in system.smtp.received if r.message["X-Request-ID"] == body["request_id"]
    ]
    header = str(received.message["List-Unsubscribe"])
    mailto = header.split("<mailto:", 1)[1].split("?", 1)[0]
    await _report(system, b"Subject: unsubscribe\r\n\r\nunsubscribe\r\n", mailto)

    async def category_off() -> dict | None:
        me = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]
        return me["preferences"] if "categories" in me["preferences"] else None

    prefs = await wait_for_condition(category_off, timeout_s=10, what="the category off")
    assert prefs == {
        "email": True,
        "push": True,
        "categories": {marketing["key"]: {"email": False}},
    }
