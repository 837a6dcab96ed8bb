"""The dashboard over plain HTTP: sign-in, redirects, the CSRF check, replay, preview."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.credentials import ADMIN, ADMIN_KEY
from tests.dashboard.conftest import dashboard_client, make_dead_letter
from tests.scenario import create_template, create_user, notification, send_one, wait_for_status
from tests.system import System
from tidings.core.status import Status
from tidings.gateway.dashboard_sessions import COOKIE

PAGES = (
    "/dashboard/",
    "/dashboard/notifications/",
    "/dashboard/dead-letters/",
    "/dashboard/templates/",
)


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


@asynccontextmanager
async def signed_in(system: System) -> AsyncIterator[httpx.AsyncClient]:
    async with dashboard_client(system) as client:
        yield await _sign_in(client)


async def _sign_in(client: httpx.AsyncClient) -> httpx.AsyncClient:
    answer = await client.post("/dashboard/login", data={"admin_key": ADMIN_KEY})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    return client


async def test_every_page_needs_a_session(system: System) -> None:
    async with dashboard_client(system) as anonymous:
        for path in PAGES:
            answer = await anonymous.get(path, headers=ADMIN)  # the API key is no session
            assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/login"
        assert (await anonymous.get("/dashboard/api/overview")).status_code == 401
        anonymous.cookies.set(COOKIE, "forged.token.value", path="/dashboard")
        assert (await anonymous.get("/dashboard/")).status_code == 303
        login = await anonymous.get("/dashboard/login")
        assert login.status_code == 200 and 'name="admin_key"' in login.text
        wrong = await anonymous.post("/dashboard/login", data={"admin_key": "not-the-key"})
        assert wrong.status_code == 401 and "not the admin key" in wrong.text
        assert COOKIE not in wrong.cookies


async def test_pages_render_and_logout_ends_the_session(system: System) -> None:
    sent = await send_one(system.gateway)
    nid = str(sent["notification_id"])
    await wait_for_status(system.gateway, nid, "delivered")
    async with signed_in(system) as client:
        for path in PAGES:
            answer = await client.get(path)
            assert answer.status_code == 200, (path, answer.text)
            assert "default-src 'none'" in answer.headers["content-security-policy"]
        listed = await client.get(
            "/dashboard/notifications/", params={"request_id": sent["request_id"]}
        )
        assert nid in listed.text and "delivered" in listed.text
        by_user = await client.get("/dashboard/notifications/", params={"user_id": sent["user_id"]})
        assert nid in by_user.text
        bad = await client.get("/dashboard/notifications/", params={"user_id": "<b>x"})
        assert "not a user id" in bad.text and "<b>x" not in bad.text  # escaped
        timeline = await client.get(f"/dashboard/notifications/{nid}")
        assert timeline.status_code == 200 and 'id="status" class="s-delivered"' in timeline.text
        live = (await client.get(f"/dashboard/api/notifications/{nid}")).json()
        assert live["data"]["status"] == "delivered" and "delivered" in live["replace"]["timeline"]
        overview = (await client.get("/dashboard/api/overview")).json()
        assert overview["data"]["counts"]["delivered"] >= 1
        assert (await client.get("/dashboard/notifications/not-a-uuid")).status_code == 404

        page = await client.get("/dashboard/")
        refused = await client.post("/dashboard/logout", data={"csrf": "0" * 64})
        assert refused.status_code == 403
        out = await client.post("/dashboard/logout", data={"csrf": csrf_in(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
        assert (await client.get("/dashboard/")).status_code == 303


async def test_the_overview_counts_every_status_and_only_those(system: System) -> None:
    """Defect fixed: the overview counted a `sent` no notification ever has and left out
    `scheduled` and `skipped` when none was stored. Now it shows exactly core.status's
    statuses, a skipped notification counted among them."""
    gw = system.gateway
    user = await create_user(gw, preferences={"email": False, "push": False})
    template = await create_template(gw)
    answer = await gw.post(
        "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
    )
    assert answer.status_code == 202 and answer.json()["data"]["status"] == "skipped"
    async with signed_in(system) as client:
        overview = (await client.get("/dashboard/api/overview")).json()
        assert set(overview["data"]["counts"]) == {s.value for s in Status}
        assert overview["data"]["counts"]["skipped"] >= 1
        page = (await client.get("/dashboard/")).text
        shown = set(re.findall(r'data-status="([a-z]+)"', page))
        assert shown == {s.value for s in Status}, shown


async def test_template_preview_shows_the_render_and_readable_errors(system: System) -> None:
    sent = await send_one(system.gateway)
    code = sent["template"]["code"]
    async with signed_in(system) as client:
        page = await client.get(
            "/dashboard/templates/",
            params={"code": code, "variables": '{"name": "<Ada>", "link": "https://x.test/"}'},
        )
        assert page.status_code == 200 and code in page.text
        assert "Welcome, &lt;Ada&gt;!" in page.text  # the subject, escaped once more for the page
        live = (
            await client.get("/dashboard/api/preview", params={"code": code, "variables": "{"})
        ).json()
        assert "not valid JSON" in live["data"]["error"]
        missing = (
            await client.get("/dashboard/api/preview", params={"code": "no-such-template"})
        ).json()
        assert missing["data"]["error"].startswith("NotFound")


async def test_replay_needs_the_csrf_token_and_replays_once(system: System) -> None:
    nid, letter = await make_dead_letter(system)
    try:
        async with signed_in(system) as client:
            page = await client.get("/dashboard/dead-letters/")
            assert f'id="dl-{letter}"' in page.text
            url = f"/dashboard/dead-letters/{letter}/replay"
            assert (await client.post(url, data={})).status_code == 403
            assert (await client.post(url, data={"csrf": "f" * 64})).status_code == 403
            async with dashboard_client(system) as anonymous:  # no session: to the login
                assert (
                    await anonymous.post(url, data={"csrf": csrf_in(page.text)})
                ).status_code == 303
            await system.smtp.start()
            done = await client.post(url, data={"csrf": csrf_in(page.text)})
            assert done.status_code == 303
            assert done.headers["location"].endswith(f"replayed={letter}&outcome=replayed")
            await wait_for_status(system.gateway, nid, "delivered", timeout_s=60)
            again = await client.post(url, data={"csrf": csrf_in(page.text)})
            assert again.headers["location"].endswith("outcome=gone")  # replayed once only
            shown = await client.get(again.headers["location"])
            assert f"Dead letter {letter}: gone." in shown.text
    finally:
        if system.smtp.server is None:
            await system.smtp.start()


async def test_a_search_postgresql_cannot_take_is_an_error_on_the_page(system: System) -> None:
    """Issue 13: a NUL in the request id searched for reached PostgreSQL (500)."""
    async with signed_in(system) as client:
        answer = await client.get("/dashboard/notifications/", params={"request_id": "a\x00b"})
        assert answer.status_code == 200, answer.text
        assert "NUL" in answer.text
