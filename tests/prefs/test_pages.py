"""The dashboard's categories page, and the preference centre's form without a browser: time
zone and quiet hours saved, bad input shown on the page with nothing changed."""

from __future__ import annotations

import re

import httpx

from tests.credentials import SECRET_KEY
from tests.dashboard.conftest import dashboard_client
from tests.dashboard.test_pages import signed_in
from tests.prefs.conftest import create_category
from tests.scenario import create_user
from tests.system import System
from tidings.core.auth import preferences_token
from tidings.gateway.preference_centre import LABELS, labels_for


async def test_the_dashboard_lists_categories(system: System) -> None:
    security = await create_category(system.gateway, "security", critical=True)
    async with signed_in(system) as client:
        page = await client.get("/dashboard/categories/")
        assert page.status_code == 200
        row = re.search(rf'<tr id="category-{security["key"]}">(.*?)</tr>', page.text)
        assert row is not None and "<td>yes</td>" in row.group(1)
    async with dashboard_client(system) as anonymous:
        assert (await anonymous.get("/dashboard/categories/")).status_code == 303


async def test_the_centre_saves_time_zone_and_quiet_hours(system: System) -> None:
    gw = system.gateway
    marketing = await create_category(gw, "marketing")
    user = await create_user(gw)
    base = str(gw.base_url).rstrip("/")
    link = f"{base}/preferences/{preferences_token(SECRET_KEY, user['user_id'])}/"
    form = {
        "email": "on",
        f"{marketing['key']}.push": "on",
        "time_zone": "Asia/Tokyo",
        "quiet_start": "22:00",
        "quiet_end": "07:00",
        "day_fri": "on",
    }
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(link)
        assert page.status_code == 200
        assert page.headers["referrer-policy"] == "no-referrer"
        assert '<html lang="en">' in page.text
        saved = await browser.post(link, data=form)
        assert saved.status_code == 303 and saved.headers["location"].endswith("?saved=true")
        got = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]
        assert got["preferences"]["email"] is True and got["preferences"]["push"] is False
        assert got["preferences"]["categories"][marketing["key"]] == {"email": False, "push": True}
        assert got["time_zone"] == "Asia/Tokyo"
        assert got["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00", "days": ["fri"]}
        shown = (await browser.get(link + "?saved=true")).text
        assert 'role="status"' in shown and "<option selected>Asia/Tokyo</option>" in shown

        refused = await browser.post(link, data={**form, "quiet_end": "22:00"})
        assert refused.status_code == 422
        assert 'role="alert"' in refused.text and "quiet_hours" in refused.text
        after = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]
        assert after == got


def test_every_language_has_every_label() -> None:
    def keys(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            out |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
        return out

    english = keys(LABELS["en"])
    for language, labels in LABELS.items():
        assert keys(labels) == english, language
    assert labels_for("de-AT") == ("de", LABELS["de"])
    assert labels_for("fr") == ("en", LABELS["en"])


async def test_the_centre_speaks_the_users_language(system: System) -> None:
    user = await create_user(system.gateway, language="de")
    link = f"/preferences/{preferences_token(SECRET_KEY, user['user_id'])}/"
    async with dashboard_client(system) as browser:
        page = await browser.get(link)
    assert page.status_code == 200
    assert '<html lang="de">' in page.text and "Einstellungen speichern" in page.text
