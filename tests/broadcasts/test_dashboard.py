"""The dashboard's Broadcasts page: behind the session, each broadcast with its progress bars."""

from __future__ import annotations

import uuid

from tests.broadcasts.support import broadcast_body, make_topic, seed_users, wait_progress
from tests.credentials import ADMIN, ADMIN_KEY
from tests.dashboard.conftest import dashboard_client
from tests.scenario import create_template
from tests.system import System


async def test_the_broadcasts_page_shows_progress(system: System, pg_database: str) -> None:
    gw = system.gateway
    tag = f"dash-{uuid.uuid4().hex[:6]}"
    key = f"topic-{tag}"
    await make_topic(gw, key, await seed_users(pg_database, 20, tag))
    template = await create_template(gw)
    answer = await gw.post("/api/v1/broadcasts/", json=broadcast_body(key, template["code"]))
    broadcast_id = answer.json()["data"]["broadcast_id"]
    await wait_progress(
        gw, broadcast_id, lambda p: p["delivered"] == 20, timeout_s=60, what="delivered"
    )
    async with dashboard_client(system) as client:
        anonymous = await client.get("/dashboard/broadcasts/", headers=ADMIN)
        assert anonymous.status_code == 303
        await client.post("/dashboard/login", data={"admin_key": ADMIN_KEY})
        page = await client.get("/dashboard/broadcasts/")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert f'id="broadcast-{broadcast_id}"' in page.text and key in page.text
    assert '<progress class="delivered" max="20" value="20"' in page.text
