"""FCM HTTP v1 end to end against a real FCM-compatible peer: the service-account JWT
assertion, the access token's reuse and refresh, the message's fields, and how every kind of
answer is taken (UNREGISTERED, INVALID_ARGUMENT, 429 with Retry-After, 5xx, 403)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.helpers import wait_for_condition
from tests.push.conftest import PushWorld
from tests.push.fcm_peer import FcmPeer, fcm_error_body
from tests.push.keys import fcm_token
from tests.push.support import devices_of, final_status, push_template, push_user, send_push
from tidings.core.errors import (
    PermanentError,
    ProviderAuthError,
    RecipientInvalid,
    TransientError,
)
from tidings.push_worker.devices_client import PAGE_SIZE
from tidings.push_worker.senders.fcm import classify
from tidings.push_worker.senders.fcm_auth import AccessTokens, ServiceAccount


async def test_messages_carry_the_fields_and_share_one_access_token(world: PushWorld) -> None:
    gw, fcm = world.system.gateway, world.fcm
    code = await push_template(gw)
    token = fcm_token()
    user_id = await push_user(gw, push_token=token)  # the spec's push_token: an FCM device
    before = fcm.token_requests

    ids = [await send_push(gw, user_id, code, priority=2) for _ in range(3)]
    for nid in ids:
        assert (await final_status(gw, nid))["status"] == "delivered"

    assert not fcm.problems
    sent = fcm.sent_to(token)
    assert len(sent) == 3
    assert fcm.token_requests - before <= 1, "the access token was not reused"
    assert len({s.bearer for s in sent}) == 1
    message = sent[0].message
    assert message["notification"] == {
        "title": "Hello Grace",
        "body": "Your order 42 has shipped.",
        "image": "https://cdn.example.com/42.png",
    }
    assert message["android"]["notification"]["image"] == "https://cdn.example.com/42.png"
    assert message["webpush"]["fcm_options"]["link"] == "https://shop.example.com/orders/42"
    assert message["webpush"]["headers"]["Urgency"] == "low"  # priority 2
    assert message["data"]["link"] == "https://shop.example.com/orders/42"
    assert message["data"]["notification_id"] in ids


async def test_unregistered_marks_the_device_dead_then_the_user_is_skipped(
    world: PushWorld,
) -> None:
    gw, fcm = world.system.gateway, world.fcm
    code = await push_template(gw)
    token = fcm_token()
    user_id = await push_user(gw, push_token=token)
    fcm.unregistered.add(token)

    first = await final_status(gw, await send_push(gw, user_id, code))
    assert first["status"] == "failed", first  # its only device is gone
    assert "UNREGISTERED" in first["error"]
    [device] = (await devices_of(gw, user_id)).values()
    assert device["status"] == "dead" and "UNREGISTERED" in device["dead_reason"]

    second = await final_status(gw, await send_push(gw, user_id, code))
    assert second["status"] == "skipped", second
    assert "no live push device" in second["history"][-1]["detail"]
    assert fcm.sent_to(token) == []  # the peer refused it once; nobody tried again


async def test_a_revoked_token_is_replaced_once(world: PushWorld) -> None:
    gw, fcm = world.system.gateway, world.fcm
    code = await push_template(gw)
    token = fcm_token()
    user_id = await push_user(gw, push_token=token)
    assert (await final_status(gw, await send_push(gw, user_id, code)))["status"] == "delivered"
    requests, refused = fcm.token_requests, fcm.refused_bearers

    fcm.expire_all()  # the cached token stops working before its expires_in
    assert (await final_status(gw, await send_push(gw, user_id, code)))["status"] == "delivered"
    assert fcm.refused_bearers == refused + 1
    assert fcm.token_requests == requests + 1


async def test_access_tokens_are_cached_until_expiry_one_refresh_at_a_time() -> None:
    """The token source on its own, with a clock the test moves."""
    peer = await FcmPeer(token_lifetime_s=600).start()
    now = [1_000_000.0]
    try:
        async with httpx.AsyncClient() as http:
            account = ServiceAccount.from_json(peer.service_account_json())
            tokens = AccessTokens(account, http, clock=lambda: now[0])
            first = await asyncio.gather(*(tokens.get() for _ in range(10)))
            assert len(set(first)) == 1 and peer.token_requests == 1
            now[0] += 500  # before the renewal point (600 s - 60 s)
            assert await tokens.get() == first[0] and peer.token_requests == 1
            now[0] += 50  # past it: renewed
            assert await tokens.get() != first[0] and peer.token_requests == 2
            assert not peer.problems
    finally:
        await peer.close()


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "wait_s"),
    [
        (
            429,
            fcm_error_body(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "slow down"),
            {"Retry-After": "7"},
            TransientError,
            7.0,
        ),
        (429, {}, {}, TransientError, None),
        (500, fcm_error_body(500, "INTERNAL", "INTERNAL", "oops"), {}, TransientError, None),
        (503, fcm_error_body(503, "UNAVAILABLE", "UNAVAILABLE", "busy"), {}, TransientError, None),
        (502, {}, {}, TransientError, None),
        (
            403,
            fcm_error_body(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "x"),
            {},
            RecipientInvalid,
            None,
        ),
        (
            403,
            fcm_error_body(403, "PERMISSION_DENIED", None, "no permission"),
            {},
            ProviderAuthError,
            None,
        ),
        (
            401,
            fcm_error_body(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "apns"),
            {},
            ProviderAuthError,
            None,
        ),
        (
            400,
            fcm_error_body(
                400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "bad", field="message.token"
            ),
            {},
            RecipientInvalid,
            None,
        ),
        (
            400,
            fcm_error_body(
                400,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
            ),
            {},
            RecipientInvalid,
            None,
        ),
        (
            400,
            fcm_error_body(
                400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "bad ttl", field="message.android.ttl"
            ),
            {},
            PermanentError,
            None,
        ),
        (404, fcm_error_body(404, "NOT_FOUND", "UNREGISTERED", "gone"), {}, RecipientInvalid, None),
    ],
)
def test_fcm_answers_are_classified(
    status: int, body: dict, headers: dict, kind: type[Exception], wait_s: float | None
) -> None:
    with pytest.raises(kind) as raised:
        classify(httpx.Response(status, json=body, headers=headers))
    assert type(raised.value) is kind
    if wait_s is not None:
        assert raised.value.retry_after_s == wait_s  # type: ignore[attr-defined]


async def test_a_429_is_retried_no_sooner_than_retry_after(world: PushWorld) -> None:
    gw, fcm = world.system.gateway, world.fcm
    code = await push_template(gw)
    token = fcm_token()
    user_id = await push_user(gw, push_token=token)
    busy = fcm_error_body(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded")
    fcm.scripts[token] = [(429, busy, {"Retry-After": "2"})]

    done = await final_status(gw, await send_push(gw, user_id, code))

    assert done["status"] == "delivered", done
    first, second = fcm.attempts_at(token)
    assert second - first >= 2.0, f"retried after {second - first:.2f}s, before Retry-After"
    # A 429 with Retry-After is the provider's rate limit (core.outbound, issue #16): the
    # message waits its turn without spending an attempt, and the history says why.
    [wait] = [h for h in done["history"] if "rate limit" in (h["detail"] or "")]
    assert wait["status"] == "pending" and not wait["error"]
    assert "429" in wait["detail"], wait
    assert done["history"][-1]["attempt"] == 1, "the throttle spent an attempt"
    assert len(fcm.sent_to(token)) == 1


async def test_server_errors_are_retried_and_a_403_holds(world: PushWorld) -> None:
    gw, fcm = world.system.gateway, world.fcm
    code = await push_template(gw)
    flaky, refused = fcm_token(), fcm_token()
    flaky_user = await push_user(gw, push_token=flaky)
    refused_user = await push_user(gw, push_token=refused)
    fcm.scripts[flaky] = [
        (500, fcm_error_body(500, "INTERNAL", "INTERNAL", "oops"), {}),
        (503, fcm_error_body(503, "UNAVAILABLE", "UNAVAILABLE", "try later"), {}),
    ]
    fcm.scripts[refused] = [(403, fcm_error_body(403, "PERMISSION_DENIED", None, "no"), {})]

    held = await send_push(gw, refused_user, code)
    done = await final_status(gw, await send_push(gw, flaky_user, code))

    assert done["status"] == "delivered", done
    errors = [h["error"] for h in done["history"] if h["status"] == "pending" and h["error"]]
    assert "transient" in errors[0] and "500" in errors[0]
    assert "transient" in errors[1] and "503" in errors[1]

    # provider-auth: held without spending attempts (core waits for the credentials).
    async def waiting() -> bool:
        data = (await gw.get(f"/api/v1/notifications/{held}/")).json()["data"]
        details = [h["detail"] or "" for h in data["history"]]
        return data["status"] == "pending" and any("provider-auth" in d for d in details)

    await wait_for_condition(waiting, timeout_s=30, what="the 403 held")


async def test_invalid_argument_about_the_token_kills_the_device_and_else_fails_once(
    world: PushWorld,
) -> None:
    gw, fcm = world.system.gateway, world.fcm
    code = await push_template(gw)
    bad_token, bad_message = fcm_token(), fcm_token()
    token_user = await push_user(gw, push_token=bad_token)
    message_user = await push_user(gw, push_token=bad_message)
    fcm.scripts[bad_token] = [
        (
            400,
            fcm_error_body(
                400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "bad token", field="message.token"
            ),
            {},
        ),
    ]
    fcm.scripts[bad_message] = [
        (
            400,
            fcm_error_body(
                400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "bad ttl", field="message.android.ttl"
            ),
            {},
        ),
    ]

    about_token = await final_status(gw, await send_push(gw, token_user, code))
    about_message = await final_status(gw, await send_push(gw, message_user, code))

    assert about_token["status"] == "failed" and "recipient_invalid" in about_token["error"]
    [dead] = (await devices_of(gw, token_user)).values()
    assert dead["status"] == "dead" and "INVALID_ARGUMENT" in dead["dead_reason"]
    assert about_message["status"] == "failed" and "permanent" in about_message["error"]
    [live] = (await devices_of(gw, message_user)).values()
    assert live["status"] == "live"  # the message was wrong, not the device
    assert len(fcm.attempts_at(bad_token)) == len(fcm.attempts_at(bad_message)) == 1


async def test_every_device_of_a_user_with_more_than_a_page_of_them_gets_it(
    world: PushWorld,
) -> None:
    gw, fcm = world.system.gateway, world.fcm
    code = await push_template(gw)
    user_id = await push_user(gw)
    tokens = [fcm_token() for _ in range(PAGE_SIZE + 5)]
    for token in tokens:
        added = await gw.post(
            f"/api/v1/users/{user_id}/devices/", json={"kind": "fcm", "token": token}
        )
        assert added.status_code == 201, added.text

    done = await final_status(gw, await send_push(gw, user_id, code), timeout_s=60)

    assert done["status"] == "delivered", done
    assert f"{len(tokens)} device(s) accepted" in done["history"][-1]["detail"]
    assert all(len(fcm.sent_to(t)) == 1 for t in tokens)
