"""Web Push end to end: gateway → push.queue → push worker → a real receiver that verifies
VAPID and decrypts the aes128gcm body with the subscription's private key."""

from __future__ import annotations

import time

from tests.push.conftest import PushWorld
from tests.push.support import (
    add_webpush,
    devices_of,
    final_status,
    push_template,
    push_user,
    send_push,
)
from tests.push.webpush_peer import Script


async def test_one_notification_arrives_once_at_each_of_two_devices(world: PushWorld) -> None:
    gw, receiver = world.system.gateway, world.webpush
    code = await push_template(gw)
    user_id = await push_user(gw)
    phone, laptop = receiver.subscribe(), receiver.subscribe()
    await add_webpush(gw, user_id, phone)
    await add_webpush(gw, user_id, laptop)

    nid = await send_push(gw, user_id, code, priority=9)
    await receiver.wait_for(lambda: receiver.received_by(phone) and receiver.received_by(laptop))
    done = await final_status(gw, nid)

    assert done["status"] == "delivered", done
    assert "2 device(s) accepted" in done["history"][-1]["detail"]
    assert not receiver.problems
    for subscription in (phone, laptop):
        [push] = receiver.received_by(subscription)
        assert push.message["title"] == "Hello Grace"
        assert push.message["body"] == "Your order 42 has shipped."
        assert push.message["image"] == "https://cdn.example.com/42.png"
        assert push.message["link"] == "https://shop.example.com/orders/42"
        assert push.message["data"]["notification_id"] == nid
        assert push.headers["urgency"] == "high"  # priority 9
        assert push.headers["ttl"] == "86400"


async def test_410_marks_the_device_dead_and_it_is_not_contacted_again(world: PushWorld) -> None:
    gw, receiver = world.system.gateway, world.webpush
    code = await push_template(gw)
    user_id = await push_user(gw)
    gone, alive = receiver.subscribe(), receiver.subscribe()
    gone_id = await add_webpush(gw, user_id, gone)
    await add_webpush(gw, user_id, alive)
    receiver.scripts[receiver.sid_of(gone)] = Script(forever=(410, {}))

    first = await final_status(gw, await send_push(gw, user_id, code))
    assert first["status"] == "delivered", first  # one device accepted
    assert "subscription gone" in first["history"][-1]["detail"]
    dead = (await devices_of(gw, user_id))[gone_id]
    assert dead["status"] == "dead" and "410" in dead["dead_reason"]

    second = await final_status(gw, await send_push(gw, user_id, code))
    assert second["status"] == "delivered"
    assert len(receiver.attempts_at(gone)) == 1, "the dead device was contacted again"
    assert len(receiver.received_by(alive)) == 2


async def test_429_is_retried_no_sooner_than_retry_after(world: PushWorld) -> None:
    gw, receiver = world.system.gateway, world.webpush
    code = await push_template(gw)
    user_id = await push_user(gw)
    busy = receiver.subscribe()
    await add_webpush(gw, user_id, busy)
    receiver.scripts[receiver.sid_of(busy)] = Script(answers=[(429, {"Retry-After": "2"})])

    done = await final_status(gw, await send_push(gw, user_id, code))

    assert done["status"] == "delivered", done
    first, second = receiver.attempts_at(busy)
    assert second - first >= 2.0, f"retried after {second - first:.2f}s, before Retry-After"
    assert len(receiver.received_by(busy)) == 1
    retry = [h for h in done["history"] if h["status"] == "pending" and h["error"]]
    assert "429" in retry[0]["error"]


async def test_a_user_without_a_live_device_is_skipped(world: PushWorld) -> None:
    gw = world.system.gateway
    code = await push_template(gw)
    user_id = await push_user(gw)  # the placeholder push_token: no device at all
    done = await final_status(gw, await send_push(gw, user_id, code))
    assert done["status"] == "skipped", done
    assert "no live push device" in done["history"][-1]["detail"]


async def test_a_payload_over_4kb_fails_permanently_before_sending(world: PushWorld) -> None:
    gw, receiver = world.system.gateway, world.webpush
    code = await push_template(gw)
    user_id = await push_user(gw)
    big = receiver.subscribe()
    await add_webpush(gw, user_id, big)
    started = time.monotonic()
    nid = await send_push(gw, user_id, code, variables={"meta": {"blob": "x" * 5000}})
    done = await final_status(gw, nid)
    assert done["status"] == "failed", done
    assert "Web Push carries at most 3993" in done["error"]
    assert receiver.attempts_at(big) == [], "an oversized payload was sent"
    assert time.monotonic() - started < 20
