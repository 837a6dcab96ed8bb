"""Topics: created once per key, subscribers added and removed in bulk (idempotent), listed by
keyset, a user's topics; bad input answered in the envelope, nothing changed."""

from __future__ import annotations

import uuid

from tests.helpers import assert_envelope
from tests.system import System


async def test_topic_subscribers_in_bulk_idempotent_and_paged(system: System) -> None:
    gw = system.gateway
    key = f"news-{uuid.uuid4().hex[:6]}"
    made = await gw.post("/api/v1/topics/", json={"key": key, "name": "News"})
    assert made.status_code == 201, made.text
    again = await gw.post("/api/v1/topics/", json={"key": key, "name": "News"})
    assert again.status_code == 409
    assert_envelope(again.json(), success=False)

    users = sorted(uuid.uuid4() for _ in range(10_000))
    body = {"user_ids": [str(u) for u in users]}
    added = await gw.post(f"/api/v1/topics/{key}/subscribers/", json=body)
    assert added.status_code == 200, added.text
    assert added.json()["data"] == {"topic_key": key, "requested": 10_000, "changed": 10_000}
    repeat = await gw.post(f"/api/v1/topics/{key}/subscribers/", json=body)
    assert repeat.json()["data"]["changed"] == 0
    too_many = {"user_ids": [str(uuid.uuid4()) for _ in range(10_001)]}
    refused = await gw.post(f"/api/v1/topics/{key}/subscribers/", json=too_many)
    assert refused.status_code == 422
    assert_envelope(refused.json(), success=False)

    seen: list[str] = []
    after = None
    while True:
        params = {"limit": 1000, **({"after": after} if after else {})}
        page = (await gw.get(f"/api/v1/topics/{key}/subscribers/", params=params)).json()
        seen += [s["user_id"] for s in page["data"]["subscribers"]]
        after = page["data"]["next_after"]
        if after is None:
            break
    assert seen == [str(u) for u in users]

    gone = await gw.post(
        f"/api/v1/topics/{key}/subscribers/remove/",
        json={"user_ids": [str(u) for u in users[:10]] + [str(uuid.uuid4())]},
    )
    assert gone.json()["data"]["changed"] == 10
    topic = (await gw.get(f"/api/v1/topics/{key}/")).json()["data"]
    assert topic["subscribers"] == 9_990

    mine = (await gw.get("/api/v1/topics/", params={"user_id": str(users[-1])})).json()
    assert [t["key"] for t in mine["data"]] == [key]
    none = (await gw.get("/api/v1/topics/", params={"user_id": str(users[0])})).json()
    assert none["data"] == []


async def test_bad_input_is_an_envelope_and_changes_nothing(system: System) -> None:
    gw = system.gateway
    for body in ({"key": "has space", "name": "x"}, {"key": "", "name": "x"}, {"name": "x"}):
        answer = await gw.post("/api/v1/topics/", json=body)
        assert answer.status_code == 422, answer.text
        assert_envelope(answer.json(), success=False)
    missing = await gw.post(
        "/api/v1/topics/nope/subscribers/", json={"user_ids": [str(uuid.uuid4())]}
    )
    assert missing.status_code == 404
    not_ids = await gw.post("/api/v1/topics/nope/subscribers/", json={"user_ids": ["x"]})
    assert not_ids.status_code == 422
    broadcast = await gw.post(
        "/api/v1/broadcasts/",
        json={
            "topic_key": "nope",
            "notification_type": "email",
            "template_code": "t",
            "variables": {"name": "a", "link": "https://example.com"},
            "request_id": "r",
        },
    )
    assert broadcast.status_code == 404
    assert_envelope(broadcast.json(), success=False)
    too_far = await gw.post(
        "/api/v1/broadcasts/",
        json={
            "topic_key": "nope",
            "notification_type": "email",
            "template_code": "t",
            "variables": {"name": "a", "link": "https://example.com"},
            "request_id": "r",
            "send_at": "2099-01-01T00:00:00Z",
        },
    )
    assert too_far.status_code == 422 and "year" in too_far.json()["error"], too_far.text
    listed = (await gw.get("/api/v1/broadcasts/")).json()["data"]
    assert not [b for b in listed if b["topic_key"] == "nope"]
