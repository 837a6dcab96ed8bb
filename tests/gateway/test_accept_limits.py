"""The accept route's limits in one Redis round trip (docs/decisions.md, "One Redis round
trip per accept"), with the order a client saw before: a key over its limit is 429 before
its body is looked at; a recipient over its limit is 429 only for a notification that would
go; a notification that does not go gives the recipient's token back. Refills are too slow
to matter within a test: what is counted is the burst."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.scenario import create_template, create_user, notification
from tests.system import System

URL = "/api/v1/notifications/"
KEY_BURST = 3
RECIPIENT_BURST = 2


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, Any]:
    return {"recipient_rate_per_s": 0.001, "recipient_burst": RECIPIENT_BURST}


@pytest.fixture
async def to(system: System) -> Callable[[], dict[str, Any]]:
    """A new notification to one new user with one new template, each call."""
    user = await create_user(system.gateway)
    template = await create_template(system.gateway)
    return lambda: notification(user["user_id"], template["code"])


async def new_key(system: System, scopes: list[str] | None = None) -> dict[str, str]:
    made = await system.gateway.post(
        "/api/v1/admin/api-keys/",
        json={
            "name": f"k-{uuid.uuid4().hex[:6]}",
            "scopes": scopes or ["notifications:send"],
            "rate_per_s": 0.001,
            "burst": KEY_BURST,
        },
    )
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['data']['key']}"}


async def push_template(system: System) -> str:
    code = f"hello-{uuid.uuid4().hex[:8]}"
    made = await system.gateway.post(
        "/api/v1/templates/",
        json={"code": code, "channel": "push", "language": "en", "title": "Hi", "body": "Tap"},
    )
    assert made.status_code == 201, made.text
    return code


def counting_scripts(system: System) -> Callable[[], int]:
    """How many times the gateway's rate limiter ran its script (one Redis round trip each)
    from now: the real script and Redis, counted on the way."""
    limiter = system.apps["gateway"].state.gateway.limits._limiter
    script = limiter._script
    calls = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return script(*args, **kwargs)

    limiter._script = counted
    return lambda: calls[0]


async def test_one_redis_round_trip_for_both_limits(
    system: System, to: Callable[[], dict[str, Any]]
) -> None:
    gw = system.gateway
    key = await new_key(system)
    # The key's first use looks it up, charged to the address's limit of look-ups.
    assert (await gw.post(URL, json=to(), headers=key)).status_code == 202
    count = counting_scripts(system)
    answer = await gw.post(URL, json=to(), headers=key)
    assert answer.status_code == 202, answer.text
    assert count() == 1


async def test_a_key_over_its_limit_is_429_before_its_body_is_looked_at(
    system: System, to: Callable[[], dict[str, Any]]
) -> None:
    gw = system.gateway
    key = await new_key(system)
    first = to()
    for body in (first, to()):
        assert (await gw.post(URL, json=body, headers=key)).status_code == 202
    # The last token: an invalid body is 422 (and takes it, as before).
    invalid = await gw.post(URL, json={"user_id": "x"}, headers=key)
    assert invalid.status_code == 422, invalid.text
    over = {
        "invalid": {"user_id": "x"},
        "repeat": first,
        "unknown user": {**to(), "user_id": str(uuid.uuid4())},
        "unknown template": {**to(), "template_code": "no-such-template"},
        "fresh": to(),
    }
    for what, body in over.items():
        answer = await gw.post(URL, json=body, headers=key)
        assert answer.status_code == 429, (what, answer.text)
        assert "this API key" in answer.json()["error"]
    # Malformed JSON is 400 before the credential is looked at, as FastAPI answers it.
    malformed = {**key, "Content-Type": "application/json"}
    assert (await gw.post(URL, content=b"{", headers=malformed)).status_code == 400
    # A key without the scope, over its limit: 429 before 403.
    reader = await new_key(system, ["notifications:read"])
    codes = [
        (await gw.post(URL, json=first, headers=reader)).status_code for _ in range(KEY_BURST + 1)
    ]
    assert codes == [403] * KEY_BURST + [429]


async def test_a_recipient_over_its_limit_is_429_only_for_one_that_would_go(
    system: System,
) -> None:
    gw = system.gateway
    user = await create_user(gw, preferences={"email": True, "push": False})
    template = await create_template(gw)
    pushed = await push_template(system)
    first = notification(user["user_id"], template["code"])
    statuses = [(await gw.post(URL, json=first)).status_code]
    statuses.append(
        (await gw.post(URL, json=notification(user["user_id"], template["code"]))).status_code
    )
    assert statuses == [202, 202]
    limited = await gw.post(URL, json=notification(user["user_id"], template["code"]))
    assert limited.status_code == 429, limited.text
    assert "notifications to this user" in limited.json()["error"]
    # What would not go is answered as before: a repeat, a skipped one, an unknown template.
    repeat = await gw.post(URL, json=first)
    assert repeat.status_code == 202 and "duplicate" in repeat.json()["message"]
    skipped = await gw.post(
        URL, json=notification(user["user_id"], pushed, notification_type="push")
    )
    assert skipped.status_code == 202 and skipped.json()["data"]["status"] == "skipped"
    unknown = await gw.post(URL, json=notification(user["user_id"], "no-such-template"))
    assert unknown.status_code == 404, unknown.text


async def test_a_notification_that_does_not_go_gives_the_recipients_token_back(
    system: System,
) -> None:
    """Repeats, skipped ones and refused ones, more than the burst of them: the recipient
    still has its whole burst for the notifications that go."""
    gw = system.gateway
    user = await create_user(gw, preferences={"email": True, "push": False})
    template = await create_template(gw)
    pushed = await push_template(system)
    first = notification(user["user_id"], template["code"])
    assert (await gw.post(URL, json=first)).status_code == 202
    for _ in range(RECIPIENT_BURST + 1):
        assert (await gw.post(URL, json=first)).status_code == 202  # repeats
        push = notification(user["user_id"], pushed, notification_type="push")
        assert (await gw.post(URL, json=push)).status_code == 202  # skipped: push is off
        missing = notification(user["user_id"], "no-such-template")
        assert (await gw.post(URL, json=missing)).status_code == 404
    assert (
        await gw.post(URL, json=notification(user["user_id"], template["code"]))
    ).status_code == 202
    assert (
        await gw.post(URL, json=notification(user["user_id"], template["code"]))
    ).status_code == 429


async def test_a_caller_without_a_limit_has_its_recipients_in_one_round_trip(
    system: System, to: Callable[[], dict[str, Any]]
) -> None:
    """The admin key has no limit of its own: the recipient's alone, one round trip."""
    count = counting_scripts(system)
    assert (await system.gateway.post(URL, json=to())).status_code == 202
    assert count() == 1
