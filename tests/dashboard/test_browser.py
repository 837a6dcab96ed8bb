"""The dashboard in headless Chromium, through the real stack: sign in; the overview's charts
drawn with this run's data (sixty points a series); a notification followed from the list
to its story and to the email as sent; cancel, resend and replay from the pages; suppress and
unsuppress; every page screenshotted at 1280 px, at phone width and in dark mode into
artifacts/dashboard/; and no request to another origin (Chromium's network log).

Selenium blocks, and the services run on this test's event loop: every browser step runs in
a thread (``asyncio.to_thread``) so the servers keep answering meanwhile."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.credentials import ADMIN_KEY
from tests.dashboard.conftest import make_dead_letter, schedule_one
from tests.scenario import send_one, wait_for_status
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
WIDE, PHONE = (1280, 1000), (390, 844)
PAGES = {
    "overview": "/dashboard/",
    "notifications": "/dashboard/notifications/",
    "dead-letters": "/dashboard/dead-letters/",
    "webhooks": "/dashboard/webhooks/",
    "broadcasts": "/dashboard/broadcasts/",
    "templates": "/dashboard/templates/",
    "categories": "/dashboard/categories/",
}

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
        f"--window-size={WIDE[0]},{WIDE[1]}",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    """A wait that looks again when the page replaced the element it was looking at (the
    overview and the story refresh themselves)."""
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=[StaleElementReferenceException])


def wait_text(driver: WebDriver, css: str, text: str) -> None:
    wait(driver).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))


def click(driver: WebDriver, element_id: str) -> None:
    wait(driver).until(ec.element_to_be_clickable((By.ID, element_id))).click()


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


def chart_points(driver: WebDriver, chart: str, series: str) -> tuple[int, float] | None:
    """The points of one drawn series (uPlot's own data) and their sum; None before it is
    drawn on a canvas."""
    found: Any = driver.execute_script(
        """const c = (window.tidingsCharts || {})[arguments[0]];
        if (!c || !document.querySelector(`#chart-${arguments[0]} canvas`)) return null;
        const i = c.plot.series.findIndex((s) => s.label === arguments[1]);
        if (i < 1) return null;
        const ys = c.plot.data[i];
        return [c.plot.data[0].length, ys.length, ys.reduce((a, b) => a + (b || 0), 0)];""",
        chart,
        series,
    )
    if found is None:
        return None
    xs, ys, total = found
    assert xs == ys
    return int(ys), float(total)


def overview_drawn(driver: WebDriver, base: str, delivered_at_least: int) -> None:
    driver.get(f"{base}/dashboard/")

    others = (("channel", "email"), ("accept", "p95"), ("e2e", "p50"))

    def drawn(d: WebDriver) -> bool:
        # The counts come from the database at once; the latencies from the replicas'
        # samples, written every few seconds: each chart is waited for, then checked.
        points = chart_points(d, "status", "delivered")
        if points is None or points[1] < delivered_at_least:
            return False
        return all((found := chart_points(d, *o)) is not None and found[1] > 0 for o in others)

    wait(driver).until(drawn)
    points = chart_points(driver, "status", "delivered")
    assert points is not None and points[0] == 60, points  # a point a minute, an hour
    for chart, series in others:
        drawn_series = chart_points(driver, chart, series)
        assert drawn_series is not None and drawn_series[0] == 60, (chart, drawn_series)
        assert drawn_series[1] > 0, (chart, series, "drawn with this run's figures")
    shot(driver, "02-overview")
    driver.execute_script("document.getElementById('charts').scrollIntoView()")
    shot(driver, "02-overview-charts")


def follow_to_the_email(driver: WebDriver, base: str, request_id: str, address: str) -> None:
    """List (search by request id) -> the story -> the email as sent."""
    driver.get(f"{base}/dashboard/notifications/")
    driver.find_element(By.ID, "request_id").send_keys(request_id)
    driver.find_element(By.ID, "search").click()
    link = wait(driver).until(ec.element_to_be_clickable((By.LINK_TEXT, request_id)))
    assert address in driver.find_element(By.CSS_SELECTOR, "#notifications .recipient").text
    shot(driver, "03-search")
    link.click()
    wait_text(driver, "#status", "delivered")
    assert address in driver.find_element(By.ID, "recipient").text
    assert driver.find_element(By.ID, "request-id").text == request_id
    shot(driver, "04-story-delivered")
    click(driver, "email-link")
    frame = wait(driver).until(ec.presence_of_element_located((By.ID, "html-part")))
    assert frame.get_attribute("sandbox") == ""
    driver.switch_to.frame(frame)
    try:
        wait_text(driver, "body", "Hello")
    finally:
        driver.switch_to.default_content()
    assert "Welcome" in driver.find_element(By.ID, "subject").text
    assert "Message-ID" in driver.find_element(By.ID, "headers").text
    shot(driver, "05-email-as-sent")


def cancel_from_the_page(driver: WebDriver, base: str, nid: str) -> None:
    driver.get(f"{base}/dashboard/notifications/{nid}")
    wait_text(driver, "#status", "scheduled")
    shot(driver, "06-story-scheduled")
    click(driver, "cancel")
    wait_text(driver, "#flash", "Cancelled.")
    wait_text(driver, "#status", "cancelled")
    shot(driver, "07-cancelled")


def suppress_and_unsuppress(driver: WebDriver, base: str, nid: str, address: str) -> None:
    driver.get(f"{base}/dashboard/notifications/{nid}")
    click(driver, "suppress")
    wait_text(driver, "#flash", f"Address {address} suppressed")
    wait_text(driver, "#recipient", "suppressed")
    shot(driver, "08-suppressed")
    click(driver, "unsuppress")
    wait_text(driver, "#flash", f"Address {address} unsuppressed")
    wait(driver).until(ec.presence_of_element_located((By.ID, "suppress")))


def resend_from_the_page(driver: WebDriver, base: str, nid: str) -> None:
    driver.get(f"{base}/dashboard/notifications/{nid}")
    wait_text(driver, "#status", "failed")
    wait_text(driver, "#timeline", "retry")
    shot(driver, "09-story-failed")
    click(driver, "resend")
    wait_text(driver, "#flash", "Resent")
    wait_text(driver, "#status", "delivered")  # the story polls
    wait_text(driver, "#timeline", "resent from the dashboard")
    shot(driver, "10-resent-delivered")


def replay_from_the_page(driver: WebDriver, base: str, letter: int) -> None:
    driver.get(f"{base}/dashboard/dead-letters/")
    row = wait(driver).until(ec.presence_of_element_located((By.ID, f"dl-{letter}")))
    assert row.find_element(By.CSS_SELECTOR, ".replayed").text == "no"
    shot(driver, "11-dead-letters")
    row.find_element(By.CSS_SELECTOR, "button.replay").click()
    wait_text(driver, "#flash", f"Dead letter {letter}: replayed.")
    wait_text(driver, f"#dl-{letter} .replayed", "yes")
    shot(driver, "12-replayed")


def preview(driver: WebDriver, base: str, code: str) -> None:
    driver.get(f"{base}/dashboard/templates/")
    driver.find_element(By.ID, "code").send_keys(code)
    variables = driver.find_element(By.ID, "variables")
    variables.clear()
    variables.send_keys('{"name": "Ada", "link": "https://example.com/"}')  # live, as typed
    wait_text(driver, "#preview .rendered-subject", "Welcome, Ada!")
    shot(driver, "13-preview")
    variables.send_keys("}")  # no longer JSON: said so
    wait_text(driver, "#preview-error", "not valid JSON")


def every_page(driver: WebDriver, base: str, story: str) -> None:
    """Each page at 1280 px, at phone width (no sideways scrolling of the page) and dark."""
    pages = PAGES | {"story": f"/dashboard/notifications/{story}"}
    pages["email"] = f"/dashboard/notifications/{story}/email"
    for size, label in ((WIDE, "wide"), (PHONE, "phone")):
        driver.set_window_size(*size)
        for name, path in pages.items():
            driver.get(f"{base}{path}")
            wait(driver).until(ec.presence_of_element_located((By.ID, "main")))
            if label == "phone":
                wide: Any = driver.execute_script(
                    "return document.documentElement.scrollWidth - window.innerWidth"
                )
                assert int(wide) <= 2, (name, wide)
            shot(driver, f"page-{name}-{label}")
    driver.set_window_size(*WIDE)
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    for name in ("overview", "story"):
        driver.get(f"{base}{pages[name]}")
        wait(driver).until(ec.presence_of_element_located((By.ID, "main")))
        background: Any = driver.execute_script(
            "return getComputedStyle(document.body).backgroundColor"
        )
        assert background != "rgb(246, 247, 249)", "dark mode follows the system"
        shot(driver, f"page-{name}-dark")
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def keyboard_focus_is_visible(driver: WebDriver, base: str) -> None:
    driver.get(f"{base}/dashboard/notifications/")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("\ue004")  # Tab: the skip link first
    focused = driver.switch_to.active_element
    assert focused.get_attribute("class") == "skip"
    outline: Any = driver.execute_script(
        "return getComputedStyle(document.activeElement).outlineStyle"
    )
    assert outline == "solid"


def requests_elsewhere(driver: WebDriver, base: str) -> list[str]:
    """Every URL the browser asked for over the network that is not the gateway's (data:,
    about: and the browser's own chrome:// pages are no request)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert any(u.startswith(f"{base}/dashboard/static/uPlot") for u in urls), "no log"
    network = [u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss")]
    return [u for u in network if not u.startswith(f"{base}/")]


@pytest.mark.timeout(600)
async def test_the_dashboard_in_chromium(system: System, browser: WebDriver) -> None:
    base = str(system.gateway.base_url).rstrip("/")
    await asyncio.to_thread(sign_in, browser, base)

    # A run through the real stack, then the overview draws it.
    sent = [await send_one(system.gateway) for _ in range(3)]
    for s in sent:
        await wait_for_status(system.gateway, str(s["notification_id"]), "delivered")
    await asyncio.to_thread(overview_drawn, browser, base, 3)
    await asyncio.to_thread(
        follow_to_the_email, browser, base, sent[0]["request_id"], sent[0]["email"]
    )

    # Cancel a scheduled one; suppress and unsuppress its recipient.
    gw = system.gateway
    other = await schedule_one(system.gateway)
    scheduled = other["notification_id"]
    await asyncio.to_thread(cancel_from_the_page, browser, base, scheduled)
    await asyncio.to_thread(suppress_and_unsuppress, browser, base, scheduled, other["email"])

    # Two failed (SMTP down): one resent from its story, one replayed from the dead letters.
    try:
        failed, _ = await make_dead_letter(system)
        await system.smtp.start()
        await asyncio.to_thread(resend_from_the_page, browser, base, failed)
        replayed, letter = await make_dead_letter(system)
        await system.smtp.start()
        await asyncio.to_thread(replay_from_the_page, browser, base, letter)
    finally:
        if system.smtp.server is None:
            await system.smtp.start()
    await wait_for_status(gw, replayed, "delivered", timeout_s=WAIT_S)

    await asyncio.to_thread(preview, browser, base, sent[0]["template"]["code"])
    await asyncio.to_thread(keyboard_focus_is_visible, browser, base)
    await asyncio.to_thread(every_page, browser, base, str(sent[0]["notification_id"]))
    elsewhere = await asyncio.to_thread(requests_elsewhere, browser, base)
    assert elsewhere == [], elsewhere
