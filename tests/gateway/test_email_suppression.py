"""Hard bounces, the suppression list and one-click unsubscribe."""

from __future__ import annotations

import asyncio
import re

from tests.helpers import assert_envelope, wait_for_condition
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System

URL = "/api/v1/notifications/"


async def test_550_at_rcpt_fails_once_then_the_address_is_skipped(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    system.smtp.refuse_rcpt.add(user["email"])
    template = await create_template(gw)
    first = (await gw.post(URL, json=notification(user["user_id"], template["code"]))).json()
    failed = await wait_for_status(gw, first["data"]["notification_id"], "failed")
    assert "recipient_invalid" in failed["error"] and "550" in failed["error"]
    assert not [e for e in failed["history"] if e["status"] == "pending" and e["error"]], "no retry"

    async def suppressed() -> bool:
        rows = (await gw.get("/api/v1/admin/suppressions/", params={"limit": 100})).json()["data"]
        return any(r["address"] == user["email"].lower() for r in rows)

    await wait_for_condition(suppressed, timeout_s=10, what="the address suppressed")
    second = (await gw.post(URL, json=notification(user["user_id"], template["code"]))).json()
    assert second["data"]["status"] == "skipped"
    got = (await gw.get(f"{URL}{second['data']['notification_id']}/")).json()["data"]
    assert "suppressed" in got["history"][0]["detail"]
    assert system.smtp.rcpt_asked[user["email"]] == 1, "the server was never asked again"

    # An admin lifts it: the next one goes out again (and is refused again).
    lifted = await gw.delete(f"/api/v1/admin/suppressions/{user['email'].lower()}/")
    assert lifted.status_code == 200, lifted.text
    system.smtp.refuse_rcpt.discard(user["email"])
    third = (await gw.post(URL, json=notification(user["user_id"], template["code"]))).json()
    assert third["data"]["status"] == "pending"
    await wait_for_status(gw, third["data"]["notification_id"], "delivered")


async def test_manual_suppression(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    added = await gw.post(
        "/api/v1/admin/suppressions/", json={"address": user["email"], "reason": "asked by phone"}
    )
    assert added.status_code == 201 and added.json()["data"]["source"] == "manual"
    answer = (await gw.post(URL, json=notification(user["user_id"], template["code"]))).json()
    assert answer["data"]["status"] == "skipped"
    bad = await gw.post("/api/v1/admin/suppressions/", json={"address": "nope", "reason": "x"})
    assert bad.status_code == 422
    assert_envelope(bad.json(), success=False)


async def test_one_click_unsubscribe(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    body = notification(user["user_id"], template["code"])
    await gw.post(URL, json=body)
    while True:
        received = await system.smtp.next()
        if received.message["X-Request-ID"] == body["request_id"]:
            break
    msg = received.message
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = re.fullmatch(r"<(.+)>", str(msg["List-Unsubscribe"]).replace(" ", ""))
    assert link is not None
    path = "/" + link.group(1).split("/", 3)[3]

    page = await gw.get(path, headers={})
    assert page.status_code == 200 and "<form" in page.text
    me = await gw.get(f"/api/v1/users/{user['user_id']}/")
    assert me.json()["data"]["preferences"]["email"] is True, "a GET never unsubscribes"

    tampered = path[:-3] + ("A" if path[-3] != "A" else "B") + path[-2:]
    refused = await gw.post(tampered, data={"List-Unsubscribe": "One-Click"}, headers={})
    assert refused.status_code == 401
    assert (await gw.get(tampered, headers={})).status_code == 400

    done = await gw.post(path, data={"List-Unsubscribe": "One-Click"}, headers={})
    assert done.status_code == 200, done.text
    me = await gw.get(f"/api/v1/users/{user['user_id']}/")
    assert me.json()["data"]["preferences"]["email"] is False
    after = (await gw.post(URL, json=notification(user["user_id"], template["code"]))).json()
    assert after["data"]["status"] == "skipped"


async def test_the_suppressions_cli(system: System) -> None:
    """`tidings suppressions add/list/remove` through the gateway's admin API."""
    import os
    import sys

    from tests.credentials import ENV

    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        | ENV
        | {"TIDINGS_GATEWAY_URL": str(system.gateway.base_url).rstrip("/")}
    )

    async def tidings(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tidings",
            "suppressions",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode()

    assert "suppressed cli@example.com" in await tidings(
        "add", "cli@example.com", "--reason", "test"
    )
    assert "cli@example.com" in await tidings("list", "--limit", "100")
    assert "no longer suppressed" in await tidings("remove", "cli@example.com")
    assert "cli@example.com" not in await tidings("list", "--limit", "100")
