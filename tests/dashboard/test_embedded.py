"""The embedded default (``tidings up`` with nothing configured: one process, SQLite, the
in-process bus, the capture server): the overview charts the run, and a captured email is
shown as sent, the same way as production's sent mail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.credentials import ADMIN_KEY
from tests.e2e.test_tidings_up import Tidings
from tests.helpers import wait_for_condition
from tests.scenario import send_one, wait_for_status


@pytest.mark.e2e
@pytest.mark.timeout(180)
async def test_the_dashboard_on_the_embedded_default(tmp_path: Path) -> None:
    tidings = Tidings(tmp_path)
    await tidings.start()
    try:
        gw = tidings.client
        sent = await send_one(gw)
        nid = sent["notification_id"]
        await wait_for_status(gw, nid, "delivered")
        async with httpx.AsyncClient(base_url=str(gw.base_url), timeout=10) as browser:
            signed = await browser.post("/dashboard/login", data={"admin_key": ADMIN_KEY})
            assert signed.status_code == 303

            async def charted() -> dict[str, Any] | None:
                o: dict[str, Any] = (await browser.get("/dashboard/api/overview")).json()["data"]
                done = sum(o["charts"]["status"]["delivered"]) == 1
                return o if done and sum(o["charts"]["accept"]["count"]) == 1 else None

            o = await wait_for_condition(charted, timeout_s=30, what="the overview")
            assert o["replicas"] == 1 and len(o["minutes"]) == 60
            page = await browser.get(f"/dashboard/notifications/{nid}/email")
            assert page.status_code == 200, page.text
            assert 'id="html-part" sandbox=""' in page.text and sent["email"] in page.text
    finally:
        code = await tidings.stop()
    assert code == 0, tidings.log.read_text()[-3000:]
