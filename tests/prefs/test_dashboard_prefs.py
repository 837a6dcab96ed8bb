"""The dashboard changes categories (create, update, delete: each a CSRF-checked form sent to
the templates service as the admin, its refusals shown with nothing changed) and shows a
user's preferences, with the way to change them: that user's preference centre, opened from
the page by a freshly signed link."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import unquote

import httpx

from tests.credentials import ADMIN
from tests.dashboard.conftest import dashboard_client
from tests.dashboard.test_pages import csrf_in, signed_in
from tests.prefs.conftest import create_category
from tests.scenario import create_user
from tests.system import System


async def _category(gw: httpx.AsyncClient, key: str) -> dict[str, Any] | None:
    answer = await gw.get(f"/api/v1/templates/categories/{key}/", headers=ADMIN)
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["data"])


async def _keys(gw: httpx.AsyncClient) -> set[str]:
    answer = await gw.get("/api/v1/templates/categories/", params={"limit": 100}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return {c["key"] for c in answer.json()["data"]}


def _outcome(page: httpx.Response) -> tuple[str | None, str | None]:
    flash = re.search(r'id="flash"[^>]*>(.*?)</p>', page.text)
    problem = re.search(r'id="problem"[^>]*>(.*?)</p>', page.text)
    return (flash and flash.group(1)), (problem and problem.group(1))


async def test_categories_are_created_changed_and_deleted_from_the_dashboard(
    system: System,
) -> None:
    gw = system.gateway
    key = f"offers-{uuid.uuid4().hex[:6]}"
    async with signed_in(system) as client:
        page = await client.get("/dashboard/categories/")
        csrf = csrf_in(page.text)
        form = {"csrf": csrf, "key": key, "description": "Offers and news"}

        forged = await client.post("/dashboard/categories/create", data={**form, "csrf": "0" * 64})
        assert forged.status_code == 403
        assert await _category(gw, key) is None

        made = await client.post("/dashboard/categories/create", data=form)
        assert made.status_code == 303
        shown = await client.get(made.headers["location"])
        assert _outcome(shown) == (f"Category &#39;{key}&#39; created.", None)
        created = await _category(gw, key)
        assert created is not None
        assert (created["description"], created["critical"]) == ("Offers and news", False)

        again = await client.get(
            (await client.post("/dashboard/categories/create", data=form)).headers["location"]
        )
        flash, problem = _outcome(again)
        assert flash is None and problem is not None and "not created" in problem

        bad = {**form, "key": "Not A Key"}
        before = await _keys(gw)
        refused = await client.get(
            (await client.post("/dashboard/categories/create", data=bad)).headers["location"]
        )
        assert _outcome(refused)[1] is not None
        assert await _keys(gw) == before

        changed = await client.post(
            f"/dashboard/categories/{key}/update",
            data={"csrf": csrf, "description": "Our offers", "critical": "on"},
        )
        assert changed.status_code == 303
        got = await _category(gw, key)
        assert got is not None and got["description"] == "Our offers" and got["critical"] is True
        row = re.search(
            rf'<tr id="category-{key}">(.*?)</tr>',
            (await client.get("/dashboard/categories/")).text,
            re.S,
        )
        assert row is not None and "<td>yes</td>" in row.group(1)

        gone = await client.post(f"/dashboard/categories/{key}/delete", data={"csrf": csrf})
        assert _outcome(await client.get(gone.headers["location"]))[0] is not None
        assert await _category(gw, key) is None

    async with dashboard_client(system) as anonymous:
        answer = await anonymous.post("/dashboard/categories/create", data=form)
        assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/login"
        assert await _category(gw, key) is None


async def test_a_users_preferences_are_shown_and_changed_through_their_centre(
    system: System,
) -> None:
    gw = system.gateway
    marketing = await create_category(gw, "marketing")
    security = await create_category(gw, "security", critical=True)
    user = await create_user(gw)
    uid = user["user_id"]
    patched = await gw.patch(
        f"/api/v1/users/{uid}/",
        json={
            "preferences": {
                "email": True,
                "push": False,
                "categories": {marketing["key"]: {"email": False}},
            },
            "time_zone": "Asia/Tokyo",
            "quiet_hours": {"start": "22:00", "end": "07:00"},
        },
    )
    assert patched.status_code == 200, patched.text
    async with signed_in(system) as client:
        page = await client.get(f"/dashboard/users/{uid}/")
        assert page.status_code == 200
        assert '<dd id="time-zone">Asia/Tokyo</dd>' in page.text
        assert "22:00 to 07:00 every night" in page.text
        assert '<td id="channel-email">on</td>' in page.text
        assert '<td id="channel-push">off</td>' in page.text
        own = re.search(rf'<tr id="user-category-{marketing["key"]}">(.*?)</tr>', page.text)
        assert own is not None and own.group(1).count("<td>off</td>") == 1  # email off, push on
        critical = re.search(rf'<tr id="user-category-{security["key"]}">(.*?)</tr>', page.text)
        assert critical is not None and "(critical)" in critical.group(1)
        assert "<td>off</td>" not in critical.group(1)

        missing = await client.get(f"/dashboard/users/{uuid.uuid4()}/")
        assert missing.status_code == 404

        action = f"/dashboard/users/{uid}/preference-centre"
        assert (await client.post(action, data={"csrf": "0" * 64})).status_code == 403
        opened = await client.post(action, data={"csrf": csrf_in(page.text)})
        assert opened.status_code == 303
        link = unquote(opened.headers["location"])
        assert re.fullmatch(r"/preferences/[^/]+/", link), link

    base = str(gw.base_url).rstrip("/")
    async with httpx.AsyncClient(timeout=10) as browser:
        centre = await browser.get(base + link)
        assert centre.status_code == 200 and "Asia/Tokyo" in centre.text
        saved = await browser.post(
            base + link, data={"email": "on", "push": "on", "time_zone": "Europe/Berlin"}
        )
        assert saved.status_code == 303
    got = (await gw.get(f"/api/v1/users/{uid}/")).json()["data"]
    assert got["time_zone"] == "Europe/Berlin" and got["quiet_hours"] is None
    assert got["preferences"]["push"] is True
    assert got["preferences"]["categories"][marketing["key"]] == {"email": False, "push": False}

    async with dashboard_client(system) as anonymous:
        assert (await anonymous.get(f"/dashboard/users/{uid}/")).status_code == 303
