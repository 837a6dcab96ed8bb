"""Finding a notification and its story over plain HTTP: the filters and keyset pages, the
recipient by name and address, the ids, the timeline, the dead letter's link; and the
actions (cancel, resend, suppress, unsuppress), each behind the CSRF check and in the
history."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import event

from tests.dashboard.conftest import make_dead_letter, schedule_one
from tests.dashboard.test_pages import csrf_in, signed_in
from tests.scenario import create_template, create_user, notification, send_one, wait_for_status
from tests.system import System
from tidings.gateway import dashboard_story as story


def ids_in(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([0-9a-f-]{36})"', html)


async def test_find_by_each_filter_and_page_by_keyset(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    sent = []
    for _ in range(3):
        answer = await gw.post(
            "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
        )
        sent.append(answer.json()["data"]["notification_id"])
    for nid in sent:
        await wait_for_status(gw, nid, "delivered")
    async with signed_in(system) as client:
        page = await client.get("/dashboard/notifications/", params={"address": user["email"]})
        assert ids_in(page.text) == sent[::-1], "newest first"
        assert page.text.count(user["email"]) >= 3, "each row shows the recipient's address"
        by_template = await client.get(
            "/dashboard/notifications/",
            params={"template": template["code"], "status": "delivered", "channel": "email"},
        )
        assert ids_in(by_template.text) == sent[::-1]
        assert not ids_in(
            (
                await client.get(
                    "/dashboard/notifications/",
                    params={"template": template["code"], "status": "failed"},
                )
            ).text
        )
        future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
        later = await client.get(
            "/dashboard/notifications/", params={"template": template["code"], "after": future}
        )
        assert not ids_in(later.text)
        unknown = await client.get("/dashboard/notifications/", params={"address": "no@one.test"})
        assert "No user has the address" in unknown.text

        # Pages of one by keyset: every row once, in order.
        story.PAGE, kept = 1, story.PAGE
        try:
            seen: list[str] = []
            url = f"/dashboard/notifications/?template={template['code']}"
            while url:
                answer = await client.get(url)
                seen += ids_in(answer.text)
                found = re.search(r'href="([^"]+)" id="next-page"', answer.text)
                url = found.group(1).replace("&amp;", "&") if found else ""
            assert seen == sent[::-1]
        finally:
            story.PAGE = kept


async def test_the_story_of_a_delivered_notification(system: System) -> None:
    sent = await send_one(system.gateway)
    nid = str(sent["notification_id"])
    await wait_for_status(system.gateway, nid, "delivered")
    user = (await system.gateway.get(f"/api/v1/users/{sent['user_id']}/")).json()["data"]
    async with signed_in(system) as client:
        page = (await client.get(f"/dashboard/notifications/{nid}")).text
        assert "Grace Hopper" in page and user["email"] in page
        assert sent["request_id"] in page and 'id="correlation-id"' in page
        for step in ("pending", "queued", "delivered"):
            assert f"<strong>{step}</strong>" in page, step
        assert 'id="status" class="s-delivered"' in page

    # The story reads the notification's row once (its API view and its other columns).
    state = system.apps["gateway"].state.gateway
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        told = await story.story(state, nid)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert told is not None and told["correlation_id"] and told["round"] == 0
    reads = [s for s in statements if re.search(r"FROM (\w+\.)?notifications\b", s)]
    assert len(reads) == 1, reads


async def test_resend_a_failed_one_and_its_dead_letter_link(system: System) -> None:
    nid, letter = await make_dead_letter(system)
    try:
        async with signed_in(system) as client:
            page = (await client.get(f"/dashboard/notifications/{nid}")).text
            assert f'href="/dashboard/dead-letters/#dl-{letter}"' in page
            assert "<strong>retry</strong>" in page, "the retry and its delay"
            url = f"/dashboard/notifications/{nid}/resend"
            assert (await client.post(url, data={"csrf": "0" * 64})).status_code == 403
            await system.smtp.start()
            done = await client.post(url, data={"csrf": csrf_in(page)})
            assert done.status_code == 303 and "Resent" in done.headers["location"]
            await wait_for_status(system.gateway, nid, "delivered", timeout_s=60)
            again = await client.post(url, data={"csrf": csrf_in(page)})
            assert "Not+resent" in again.headers["location"]
            story = (await client.get(f"/dashboard/notifications/{nid}")).text
            assert "resent from the dashboard (round 1)" in story
    finally:
        if system.smtp.server is None:
            await system.smtp.start()


async def test_cancel_a_scheduled_one_and_suppress_its_address(system: System) -> None:
    gw = system.gateway
    user = await schedule_one(system.gateway)
    nid = user["notification_id"]
    async with signed_in(system) as client:
        page = (await client.get(f"/dashboard/notifications/{nid}")).text
        assert 'id="cancel"' in page
        url = f"/dashboard/notifications/{nid}/cancel"
        assert (await client.post(url, data={})).status_code == 403
        done = await client.post(url, data={"csrf": csrf_in(page)})
        assert "Cancelled" in done.headers["location"]
        await wait_for_status(gw, nid, "cancelled")
        again = await client.post(url, data={"csrf": csrf_in(page)})
        assert "Not+cancelled" in again.headers["location"], "already cancelled"

        form = {"csrf": csrf_in(page), "address": user["email"], "back": nid}
        assert (
            await client.post("/dashboard/suppressions/add", data=form | {"csrf": "1" * 64})
        ).status_code == 403
        await client.post("/dashboard/suppressions/add", data=form)
        listed = await gw.get("/api/v1/admin/suppressions/")
        assert user["email"] in listed.text
        page = (await client.get(f"/dashboard/notifications/{nid}")).text
        assert 'id="unsuppress"' in page and f"address {user['email']} suppressed" in page
        await client.post("/dashboard/suppressions/remove", data=form)
        page = (await client.get(f"/dashboard/notifications/{nid}")).text
        assert 'id="suppress"' in page and f"address {user['email']} unsuppressed" in page
