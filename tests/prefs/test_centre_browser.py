"""The preference centre in headless Chromium, reached by the signed link in an email's
footer: a category turned off with the keyboard, saved and confirmed (the focus on the
confirmation), and the next notification of that category skipped; a tampered link refused.
Screenshots go to artifacts/prefs/."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from tests.dashboard.test_browser import (  # noqa: F401  (browser, pytestmark: used by pytest)
    browser,
    pytestmark,
    wait,
    wait_text,
)
from tests.prefs.conftest import categorised_template, create_category, history_details
from tests.scenario import create_user, notification, wait_for_status
from tests.system import System

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "prefs"
URL = "/api/v1/notifications/"


def shot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def turn_off_and_save(driver: WebDriver, link: str, category: str) -> None:
    driver.get(link)
    box = wait(driver).until(ec.presence_of_element_located((By.ID, f"{category}-email")))
    assert box.is_selected()
    # Every control has a label a screen reader reads; every group a legend.
    unlabelled = driver.execute_script(
        "return [...document.querySelectorAll('input, select')]"
        ".filter(e => e.type !== 'hidden' && e.labels.length === 0).map(e => e.id)"
    )
    assert unlabelled == []
    assert driver.execute_script(
        "return [...document.querySelectorAll('fieldset')].every(f => f.querySelector('legend'))"
    )
    shot(driver, "01-centre")
    # By keyboard: focus the box, space toggles it, then to the button and Enter.
    driver.execute_script("arguments[0].focus()", box)
    box.send_keys(Keys.SPACE)
    assert not box.is_selected()
    driver.find_element(By.ID, "save").send_keys(Keys.ENTER)
    wait_text(driver, "#status", "Your preferences are saved.")
    assert driver.switch_to.active_element.get_attribute("id") == "status"
    assert not driver.find_element(By.ID, f"{category}-email").is_selected()
    shot(driver, "02-saved")


def open_tampered(driver: WebDriver, link: str) -> None:
    driver.get(link)
    wait_text(driver, "#invalid", "not valid")
    assert driver.find_elements(By.ID, "preferences") == []  # no form
    shot(driver, "03-tampered")


async def test_the_preference_centre_in_chromium(
    system: System,
    browser: WebDriver,  # noqa: F811  (the fixture)
) -> None:
    gw = system.gateway
    marketing = await create_category(gw, "marketing")
    security = await create_category(gw, "security", critical=True)
    offers = await categorised_template(gw, marketing["key"])
    await categorised_template(gw, security["key"])
    user = await create_user(gw)

    # The link, as the user has it: the footer of an email we sent.
    first = notification(user["user_id"], offers["code"])
    await gw.post(URL, json=first)
    while True:
        message = (await system.smtp.next(timeout_s=30)).message
        if str(message["X-Request-ID"]) == first["request_id"]:
            break
    text = message.get_body(("plain",)).get_content()
    found = re.search(r"(http://\S+/preferences/[^/\s]+/)", text)
    assert found is not None, text
    link = found.group(1)

    await asyncio.to_thread(turn_off_and_save, browser, link, marketing["key"])
    prefs = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]["preferences"]
    assert prefs["categories"][marketing["key"]] == {"email": False, "push": True}
    assert security["key"] not in prefs.get("categories", {})  # critical: never sent

    after = await gw.post(URL, json=notification(user["user_id"], offers["code"]))
    skipped = await wait_for_status(gw, after.json()["data"]["notification_id"], "skipped")
    assert history_details(skipped) == [
        f"the user's email preference for {marketing['key']} is off"
    ]

    token = link.rstrip("/").rsplit("/", 1)[1]
    tampered = link.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    await asyncio.to_thread(open_tampered, browser, tampered)
    async with httpx.AsyncClient(timeout=10) as plain:
        assert (await plain.get(tampered)).status_code == 400
        posted = await plain.post(tampered, content=b"email=on")
        assert posted.status_code == 400
    unchanged = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]
    assert unchanged["preferences"] == prefs
