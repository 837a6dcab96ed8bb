"""The email as sent: kept by the email worker, shown by the dashboard (HTML sandboxed, text,
headers, raw source), dropped after its time; and the worker answers the service token only."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy import update

from tests.credentials import ADMIN
from tests.dashboard.test_pages import signed_in
from tests.scenario import send_one, wait_for_status
from tests.system import System
from tidings.core.db import open_database
from tidings.core.deliveries.models import SentMessage
from tidings.core.errors import NotFound
from tidings.email_worker.sent import SentMail
from tidings.email_worker.settings import EmailSettings


async def test_the_email_as_sent_is_shown_sandboxed(system: System) -> None:
    sent = await send_one(system.gateway)
    nid = str(sent["notification_id"])
    await wait_for_status(system.gateway, nid, "delivered")
    # The page reads the copy through the gateway's one client of the worker (its state's,
    # closed with it), not a client of its own per view.
    worker_http = system.apps["gateway"].state.gateway.email_worker_http
    asked: list[str] = []

    async def seen(request: httpx.Request) -> None:
        asked.append(request.url.path)

    worker_http.event_hooks["request"].append(seen)
    async with signed_in(system) as client:
        story = await client.get(f"/dashboard/notifications/{nid}")
        assert f'href="/dashboard/notifications/{nid}/email"' in story.text
        for _ in range(2):
            page = await client.get(f"/dashboard/notifications/{nid}/email")
            assert page.status_code == 200, page.text
        worker_http.event_hooks["request"].remove(seen)
        assert asked == [f"/api/v1/email/sent/{nid}/"] * 2
        assert "default-src 'none'" in page.headers["content-security-policy"]
        html = page.text
        assert 'id="html-part" sandbox=""' in html and "srcdoc=" in html
        assert "Welcome, Grace!" in html  # the subject
        assert 'id="text-part"' in html and "List-Unsubscribe" in html and "Message-ID" in html
        assert "Content-Type: multipart/alternative" in html  # the raw source
        missing = await client.get(
            f"/dashboard/notifications/{'0' * 8}-0000-0000-0000-{'0' * 12}/email"
        )
        assert missing.status_code == 404
    worker = f"http://127.0.0.1:{system.ports['email']}/api/v1/email/sent/{nid}/"
    async with httpx.AsyncClient(timeout=10) as anyone:
        assert (await anyone.get(worker)).status_code == 401
        assert (await anyone.get(worker, headers=ADMIN)).status_code == 401  # not the admin key


async def test_copies_older_than_kept_are_dropped(system: System) -> None:
    db = open_database(EmailSettings(**system.settings).store_url, "email")
    try:
        # Kept 30 days: the copies the suite's earlier sends left in this store are younger,
        # so the one made old is the only one past it (with a minute, a slow run's were not).
        store = SentMail(db, keep_s=30 * 86400, every_s=60, batch=1000)
        await store.record("old-one", 0, 1, b"Subject: old\r\n\r\nold")
        await store.record("new-one", 0, 1, b"Subject: new\r\n\r\nnew")
        async with db.sessions() as session, session.begin():
            await session.execute(
                update(SentMessage)
                .where(SentMessage.notification_id == "old-one")
                .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=31))
            )
        assert await store.purge() == 1
        assert (await store.latest("new-one")).raw.endswith(b"new")
        with pytest.raises(NotFound):
            await store.latest("old-one")
    finally:
        await db.close()
