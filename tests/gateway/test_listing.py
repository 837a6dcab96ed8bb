"""Listing notifications: filters, newest first, and exact pagination meta on the edges."""

from __future__ import annotations

import uuid

from tests.helpers import assert_envelope
from tests.scenario import create_template, create_user, notification
from tests.system import System

URL = "/api/v1/notifications/"


async def test_pages_and_meta_on_the_boundaries(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    sent = []
    for _ in range(5):
        answer = await gw.post(URL, json=notification(user["user_id"], template["code"]))
        sent.append(answer.json()["data"]["notification_id"])
    code = template["code"]

    async def page(**params: object) -> dict:
        answer = await gw.get(URL, params={"template_code": code, **params})
        assert answer.status_code == 200, answer.text
        assert_envelope(answer.json(), success=True)
        return answer.json()

    empty = await gw.get(URL, params={"template_code": "no-such-code"})
    assert empty.json()["data"] == []
    assert empty.json()["meta"] == {
        "total": 0,
        "limit": 20,
        "page": 1,
        "total_pages": 0,
        "has_next": False,
        "has_previous": False,
    }
    one = await page()
    assert [n["notification_id"] for n in one["data"]] == sent[::-1], "newest first"
    assert one["meta"] == {
        "total": 5,
        "limit": 20,
        "page": 1,
        "total_pages": 1,
        "has_next": False,
        "has_previous": False,
    }
    last = await page(limit=2, page=3)
    assert [n["notification_id"] for n in last["data"]] == [sent[0]]
    assert last["meta"] == {
        "total": 5,
        "limit": 2,
        "page": 3,
        "total_pages": 3,
        "has_next": False,
        "has_previous": True,
    }
    middle = await page(limit=2, page=2)
    assert middle["meta"]["has_next"] and middle["meta"]["has_previous"]
    single = await page(limit=1)
    assert len(single["data"]) == 1 and single["meta"]["total_pages"] == 5
    beyond = await page(limit=2, page=9)
    assert beyond["data"] == [] and beyond["meta"]["has_next"] is False


async def test_filters(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    muted = await create_user(gw, preferences={"email": False, "push": False})
    template = await create_template(gw)
    body = notification(user["user_id"], template["code"])
    await gw.post(URL, json=body)
    await gw.post(URL, json=notification(muted["user_id"], template["code"]))
    by_request = (await gw.get(URL, params={"request_id": body["request_id"]})).json()
    assert [n["request_id"] for n in by_request["data"]] == [body["request_id"]]
    skipped = await gw.get(URL, params={"template_code": template["code"], "status": "skipped"})
    assert [n["user_id"] for n in skipped.json()["data"]] == [muted["user_id"]]
    by_user = (await gw.get(URL, params={"user_id": muted["user_id"]})).json()
    assert by_user["meta"]["total"] == 1
    later = (
        await gw.get(
            URL, params={"template_code": template["code"], "created_after": "2999-01-01T00:00:00Z"}
        )
    ).json()
    assert later["meta"]["total"] == 0
    typed = await gw.get(
        URL, params={"template_code": template["code"], "notification_type": "push"}
    )
    assert typed.json()["meta"]["total"] == 0
    for bad in ({"limit": 101}, {"page": 0}, {"user_id": "x"}, {"notification_type": "sms"}):
        refused = await gw.get(URL, params=bad)
        assert refused.status_code == 422, bad
        assert_envelope(refused.json(), success=False)


async def test_a_user_lists_only_their_own(system: System) -> None:
    gw = system.gateway
    password = "a long enough password"
    alice = await create_user(gw, password=password)
    bob = await create_user(gw)
    template = await create_template(gw)
    await gw.post(URL, json=notification(alice["user_id"], template["code"]))
    await gw.post(URL, json=notification(bob["user_id"], template["code"]))
    login = await gw.post(
        "/api/v1/auth/login/", json={"email": alice["email"], "password": password}
    )
    token = {"Authorization": f"Bearer {login.json()['data']['access_token']}"}
    mine = await gw.get(URL, params={"user_id": bob["user_id"]}, headers=token)
    assert mine.status_code == 200
    assert {n["user_id"] for n in mine.json()["data"]} == {alice["user_id"]}
    assert uuid.UUID(alice["user_id"])
