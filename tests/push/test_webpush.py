"""Web Push end to end: gateway → push.queue → push worker → a real receiver that verifies
VAPID and decrypts the aes128gcm body with the subscription's private key."""

from __future__ import annotations

import pytest

from tests.helpers import wait_for_condition
from tests.push.conftest import PushWorld
from tests.push.support import (
    add_webpush,
    devices_of,
    final_status,
    gone_and_alive,
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
    code, user_id, gone, alive, gone_id = await gone_and_alive(gw, receiver)

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
    # A 429 with Retry-After is the provider's rate limit (core.outbound, issue #16): the
    # message waits its turn without spending an attempt, and the history says why.
    [wait] = [h for h in done["history"] if "rate limit" in (h["detail"] or "")]
    assert wait["status"] == "pending" and not wait["error"]
    assert "429" in wait["detail"], wait
    assert done["history"][-1]["attempt"] == 1, "the throttle spent an attempt"


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
    nid = await send_push(gw, user_id, code, variables={"meta": {"blob": "x" * 5000}})
    done = await final_status(gw, nid)
    assert done["status"] == "failed", done
    assert "Web Push carries at most 3993" in done["error"]
    assert receiver.attempts_at(big) == [], "an oversized payload was sent"


async def test_server_errors_are_retried_without_the_body(world: PushWorld) -> None:
    """5xx is transient: it spends an attempt, and the notification arrives once the push
    service takes it. What the push service said is not copied into the history."""
    gw, receiver = world.system.gateway, world.webpush
    code = await push_template(gw)
    user_id = await push_user(gw)
    device = receiver.subscribe()
    await add_webpush(gw, user_id, device)
    receiver.scripts[receiver.sid_of(device)] = Script(
        answers=[(500, {}), (503, {})], body=b"stack trace of the push service"
    )

    done = await final_status(gw, await send_push(gw, user_id, code))

    assert done["status"] == "delivered", done
    errors = [h["error"] for h in done["history"] if h["status"] == "pending" and h["error"]]
    assert len(errors) == 2, errors
    assert "transient" in errors[0] and "answered 500" in errors[0]
    assert "transient" in errors[1] and "answered 503" in errors[1]
    assert not any("stack trace" in e for e in errors)
    assert len(receiver.received_by(device)) == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_an_endpoint_refusing_us_marks_its_device_and_holds_nothing(
    world: PushWorld, status: int
) -> None:
    """401/403 from a user's endpoint (a server of the user's choice) is that device's
    problem: it is marked dead and the user's other device gets the push; no provider-auth
    alert, nothing held (before: the whole notification waited an hour on an alert)."""
    gw, receiver = world.system.gateway, world.webpush
    code = await push_template(gw)
    user_id = await push_user(gw)
    refusing, good = receiver.subscribe(), receiver.subscribe()
    refusing_id = await add_webpush(gw, user_id, refusing)
    await add_webpush(gw, user_id, good)
    receiver.scripts[receiver.sid_of(refusing)] = Script(forever=(status, {}), body=b"secret")
    nid = await send_push(gw, user_id, code)

    done = await final_status(gw, nid)
    assert done["status"] == "delivered", done
    details = " | ".join(h["detail"] or "" for h in done["history"])
    assert "provider-auth" not in details and "secret" not in details
    assert (await devices_of(gw, user_id))[refusing_id]["status"] == "dead"
    assert len(receiver.received_by(good)) == 1


async def test_a_device_that_failed_then_vanished_makes_it_failed_not_skipped(
    world: PushWorld,
) -> None:
    """One device gone (410) in the first attempt, the other deleted before the retry:
    the notification failed, with the gone device's reason; it was not 'skipped'."""
    gw, receiver = world.system.gateway, world.webpush
    code = await push_template(gw)
    user_id = await push_user(gw)
    gone, busy = receiver.subscribe(), receiver.subscribe()
    gone_id = await add_webpush(gw, user_id, gone)
    busy_id = await add_webpush(gw, user_id, busy)
    receiver.scripts[receiver.sid_of(gone)] = Script(forever=(410, {}))
    receiver.scripts[receiver.sid_of(busy)] = Script(answers=[(429, {"Retry-After": "3"})])

    nid = await send_push(gw, user_id, code)

    async def first_attempt_recorded() -> bool:
        return (await devices_of(gw, user_id))[gone_id]["status"] == "dead"

    await wait_for_condition(first_attempt_recorded, timeout_s=30, what="the 410 recorded")
    deleted = await gw.delete(f"/api/v1/users/{user_id}/devices/{busy_id}/")
    assert deleted.status_code == 200
    done = await final_status(gw, nid)

    assert done["status"] == "failed", done
    assert "subscription gone" in done["error"] and gone_id in done["error"]
    assert len(receiver.attempts_at(busy)) == 1
