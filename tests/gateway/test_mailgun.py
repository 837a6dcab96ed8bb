"""The Mailgun API transport beside SMTP: with the SMTP server down, mail goes out through the
provider (a local peer that checks the auth and the form), in the same attempt; once SMTP's
breaker is open, straight to the provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.helpers import wait_for_condition
from tests.mailgun_peer import MailgunPeer
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System

API_KEY = "key-mailgun-test"
DOMAIN = "mg.tidings.test"


@pytest.fixture(scope="module")
async def mailgun() -> AsyncIterator[MailgunPeer]:
    peer = await MailgunPeer(API_KEY, DOMAIN).start()
    yield peer
    await peer.stop()


@pytest.fixture(scope="module")
def system_overrides(mailgun: MailgunPeer) -> dict[str, Any]:
    return {
        "mailgun_api_key": API_KEY,
        "mailgun_domain": DOMAIN,
        "mailgun_base_url": mailgun.url,
        "smtp_breaker_failures": 1,
        "smtp_breaker_reset_s": 60,
    }


async def test_smtp_down_fails_over_to_the_provider(system: System, mailgun: MailgunPeer) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    await system.smtp.stop()
    for _ in range(2):
        body = notification(user["user_id"], template["code"])
        nid = (await gw.post("/api/v1/notifications/", json=body)).json()["data"]["notification_id"]
        message = await mailgun.arrivals.get()
        assert message["X-Request-ID"] == body["request_id"]
        assert message["Message-ID"] == f"<{nid}@tidings.localhost>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        done = await wait_for_status(gw, nid, "delivered")
        assert "via mailgun" in done["history"][-1]["detail"]
        assert [e["attempt"] for e in done["history"] if e["status"] == "delivered"] == [1]
    assert mailgun.received[0][0] == [f"Grace Hopper <{user['email']}>"]
    assert not mailgun.problems

    async def breaker_shown() -> bool:
        # /health's checks are cached for a second (core.web.HealthRegistry).
        health = (await gw.get(f"http://127.0.0.1:{system.ports['email']}/health")).json()
        return "smtp breaker open" in health["data"]["checks"]["smtp"]

    await wait_for_condition(breaker_shown, timeout_s=10, what="the open breaker in /health")
