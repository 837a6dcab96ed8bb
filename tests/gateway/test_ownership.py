"""A notification belongs to the API key (client application) that created it: another
client neither reads, lists nor cancels it, and cannot tell that it exists (404 as for a
missing id, and a 403 for a missing scope whether the id exists or not); request ids are
each client's own; ``notifications:read_all`` and the admin key see every client's."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from tests.helpers import assert_envelope
from tests.scenario import create_template, create_user, notification
from tests.system import System

URL = "/api/v1/notifications/"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def world(system: System) -> dict[str, Any]:
    gw = system.gateway
    keys = {}
    for name, scopes in (
        ("a", ["notifications:send", "notifications:read"]),
        ("b", ["notifications:send", "notifications:read"]),
        ("send_only", ["notifications:send"]),
        ("all", ["notifications:read_all"]),
    ):
        made = await gw.post("/api/v1/admin/api-keys/", json={"name": name, "scopes": scopes})
        assert made.status_code == 201, made.text
        keys[name] = bearer(made.json()["data"]["key"])
    user = await create_user(gw)
    template = await create_template(gw)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()

    def body(**overrides: Any) -> dict[str, Any]:
        return notification(user["user_id"], template["code"], send_at=later, **overrides)

    return {"keys": keys, "body": body}


def not_found_shape(answer: Any, nid: str) -> tuple[int, str]:
    """Status and error with the id taken out: another's and a missing one must match."""
    return answer.status_code, answer.json()["error"].replace(nid, "<id>")


async def test_another_clients_notification_is_not_there(
    system: System, world: dict[str, Any]
) -> None:
    gw = system.gateway
    a, b, keys = world["keys"]["a"], world["keys"]["b"], world["keys"]
    sent = await gw.post(URL, json=world["body"](metadata={"secret": "a's"}), headers=a)
    assert sent.status_code == 202, sent.text
    nid = sent.json()["data"]["notification_id"]
    missing = str(uuid.uuid4())
    assert (await gw.get(f"{URL}{nid}/", headers=a)).status_code == 200
    for method in ("GET", "DELETE"):
        theirs = await gw.request(method, f"{URL}{nid}/", headers=b)
        absent = await gw.request(method, f"{URL}{missing}/", headers=b)
        assert theirs.status_code == 404, (method, theirs.text)
        assert_envelope(theirs.json(), success=False)
        assert "a's" not in theirs.text
        assert not_found_shape(theirs, nid) == not_found_shape(absent, missing), method
    # Without the read scope: 403 whether the id exists or not.
    for target in (nid, missing):
        answer = await gw.get(f"{URL}{target}/", headers=keys["send_only"])
        assert answer.status_code == 403, answer.text
    listed = (await gw.get(URL, headers=b)).json()["data"]
    assert nid not in {n["notification_id"] for n in listed}
    assert nid in {n["notification_id"] for n in (await gw.get(URL, headers=a)).json()["data"]}
    # B's cancel did nothing; read_all and the admin see it; the owner cancels it.
    seen = await gw.get(f"{URL}{nid}/", headers=keys["all"])
    assert seen.status_code == 200 and seen.json()["data"]["status"] == "scheduled"
    everyone = {
        n["notification_id"] for n in (await gw.get(URL, headers=keys["all"])).json()["data"]
    }
    assert nid in everyone
    assert (await gw.get(f"{URL}{nid}/")).status_code == 200
    cancelled = await gw.delete(f"{URL}{nid}/", headers=a)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["data"]["status"] == "cancelled"


async def test_request_ids_are_each_clients_own(system: System, world: dict[str, Any]) -> None:
    gw = system.gateway
    a, b = world["keys"]["a"], world["keys"]["b"]
    rid = f"order-{uuid.uuid4().hex}"
    first = await gw.post(URL, json=world["body"](request_id=rid), headers=a)
    assert first.status_code == 202, first.text
    # Another client with the same id (and another body): its own notification, no 409.
    other = await gw.post(
        URL, json=world["body"](request_id=rid, metadata={"from": "b"}), headers=b
    )
    assert other.status_code == 202, other.text
    assert other.json()["data"]["notification_id"] != first.json()["data"]["notification_id"]
    assert "duplicate" not in other.json()["message"]
    batch = await gw.post(
        f"{URL}batch/",
        json={"notifications": [world["body"](request_id=rid, metadata={"from": "b"})]},
        headers=b,
    )
    assert batch.json()["data"][0]["outcome"] == "duplicate", batch.text
    assert batch.json()["data"][0]["notification_id"] == other.json()["data"]["notification_id"]
    fresh = f"order-{uuid.uuid4().hex}"
    await gw.post(URL, json=world["body"](request_id=fresh), headers=a)
    batch = await gw.post(
        f"{URL}batch/", json={"notifications": [world["body"](request_id=fresh)]}, headers=b
    )
    assert batch.json()["data"][0]["outcome"] == "accepted", batch.text
    # Within one client, the same id with another body is still a 409.
    again = await gw.post(
        URL, json=world["body"](request_id=rid, metadata={"changed": True}), headers=a
    )
    assert again.status_code == 409, again.text
    mine = (await gw.get(URL, params={"request_id": rid}, headers=a)).json()["data"]
    assert [n["notification_id"] for n in mine] == [first.json()["data"]["notification_id"]]
