"""FCM HTTP v1 end to end against a real FCM-compatible peer: the service-account JWT
assertion, the access token's reuse and refresh, the message's fields, UNREGISTERED."""

from __future__ import annotations

import asyncio

import httpx

from tests.push.conftest import PushWorld
from tests.push.fcm_peer import FcmPeer
from tests.push.keys import fcm_token
from tests.push.support import devices_of, final_status, push_template, push_user, send_push
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
