"""The dashboard in headless Chromium: sign in, watch a notification turn delivered, replay a
dead letter, preview a template. Screenshots go to artifacts/dashboard/.

Selenium blocks, and the services run on this test's event loop: every browser step runs in
a thread (``asyncio.to_thread``) so the servers keep answering meanwhile."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.credentials import ADMIN_KEY
from tests.dashboard.conftest import make_dead_letter, send_one
from tests.scenario import wait_for_status
from tests.system import System

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"
WAIT_S = 60

pytestmark = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait_text(driver: WebDriver, css: str, text: str) -> None:
    wait(driver).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))


def sign_in(driver: WebDriver, base: str) -> None:
    driver.get(f"{base}/dashboard/")  # no session: to the login form
    wait(driver).until(ec.url_contains("/dashboard/login"))
    driver.find_element(By.ID, "admin_key").send_keys("not the key")
    driver.find_element(By.ID, "sign-in").click()
    wait_text(driver, "#login-error", "not the admin key")
    shot(driver, "01-login-refused")
    driver.find_element(By.ID, "admin_key").send_keys(ADMIN_KEY)
    driver.find_element(By.ID, "sign-in").click()
    wait_text(driver, "#overview", "Notifications by status")
    shot(driver, "02-overview")


def wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    """A wait that looks again when the page replaced the element it was looking at (the
    overview and the timeline refresh themselves)."""
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=[StaleElementReferenceException])


def open_timeline(driver: WebDriver, base: str, request_id: str) -> None:
    """Search by request id, then follow the link to the timeline."""
    driver.get(f"{base}/dashboard/notifications/")
    driver.find_element(By.ID, "request_id").send_keys(request_id)
    driver.find_element(By.ID, "search").click()
    link = wait(driver).until(ec.element_to_be_clickable((By.LINK_TEXT, request_id)))
    shot(driver, "03-search")
    link.click()
    wait(driver).until(ec.presence_of_element_located((By.ID, "timeline")))


def replay(driver: WebDriver, base: str, letter: int) -> None:
    driver.get(f"{base}/dashboard/dead-letters/")
    row = wait(driver).until(ec.presence_of_element_located((By.ID, f"dl-{letter}")))
    assert row.find_element(By.CSS_SELECTOR, ".replayed").text == "no"
    shot(driver, "05-dead-letters")
    row.find_element(By.CSS_SELECTOR, "button.replay").click()
    wait_text(driver, "#flash", f"Dead letter {letter}: replayed.")
    wait_text(driver, f"#dl-{letter} .replayed", "yes")
    shot(driver, "06-replayed")


def preview(driver: WebDriver, base: str, code: str) -> None:
    driver.get(f"{base}/dashboard/templates/")
    driver.find_element(By.ID, "code").send_keys(code)
    variables = driver.find_element(By.ID, "variables")
    variables.clear()
    variables.send_keys('{"name": "Ada", "link": "https://example.com/"}')  # live, as typed
    wait_text(driver, "#preview .rendered-subject", "Welcome, Ada!")
    shot(driver, "08-preview")
    variables.send_keys("}")  # no longer JSON: said so
    wait_text(driver, "#preview-error", "not valid JSON")
    shot(driver, "09-preview-error")


async def test_the_dashboard_in_chromium(system: System, browser: WebDriver) -> None:
    base = str(system.gateway.base_url).rstrip("/")
    await asyncio.to_thread(sign_in, browser, base)

    # A notification, followed to delivered on its live timeline.
    sent = await send_one(system)
    await asyncio.to_thread(open_timeline, browser, base, sent["request_id"])
    await asyncio.to_thread(wait_text, browser, "#status", "delivered")
    await asyncio.to_thread(shot, browser, "04-timeline-delivered")

    # A dead letter (SMTP down), replayed from the page once SMTP is back.
    nid, letter = await make_dead_letter(system)
    try:
        await system.smtp.start()
        await asyncio.to_thread(replay, browser, base, letter)
    finally:
        if system.smtp.server is None:
            await system.smtp.start()
    await wait_for_status(system.gateway, nid, "delivered", timeout_s=WAIT_S)
    await asyncio.to_thread(browser.get, f"{base}/dashboard/notifications/{nid}")
    await asyncio.to_thread(wait_text, browser, "#timeline", "replayed from dead letter")
    await asyncio.to_thread(wait_text, browser, "#status", "delivered")
    await asyncio.to_thread(shot, browser, "07-replayed-delivered")

    await asyncio.to_thread(preview, browser, base, sent["template"]["code"])
