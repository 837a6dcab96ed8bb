"""The devices API of the users service: registration with validation, listing, removal,
dead marks, and the specification's push_token as a device."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.credentials import SETTINGS
from tests.helpers import app_client, assert_envelope
from tests.push.conftest import with_devices
from tests.push.keys import BrowserKeys, b64url, fcm_token
from tidings.core.migrations import migrate
from tidings.users.app import create_app
from tidings.users.settings import UsersSettings


async def _users(pg_database: str, allow_insecure: bool) -> AsyncIterator[httpx.AsyncClient]:
    settings = UsersSettings(
        database_url=pg_database, webpush_allow_insecure=allow_insecure, **SETTINGS
    )
    await asyncio.to_thread(migrate, "tidings.users", settings.store_url, "users")
    async with app_client(with_devices(create_app(settings))) as client:
        yield client


@pytest.fixture
async def users(pg_database: str) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _users(pg_database, allow_insecure=False):
        yield client


@pytest.fixture
async def dev_users(pg_database: str) -> AsyncIterator[httpx.AsyncClient]:
    """TIDINGS_WEBPUSH_ALLOW_INSECURE=true."""
    async for client in _users(pg_database, allow_insecure=True):
        yield client


async def new_user(client: httpx.AsyncClient, push_token: str | None = None) -> str:
    body = {
        "name": "Ada",
        "email": f"ada-{uuid.uuid4().hex[:8]}@example.com",
        "push_token": push_token,
        "preferences": {"email": True, "push": True},
        "password": "correct horse battery",
    }
    answer = await client.post("/api/v1/users/", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["data"]["user_id"])


def subscription(endpoint: str = "https://push.example.net/send/abc") -> dict:
    keys = BrowserKeys.new()
    return {"endpoint": endpoint, "keys": {"p256dh": keys.p256dh, "auth": keys.auth}}


async def test_register_list_get_delete_both_kinds(users: httpx.AsyncClient) -> None:
    user_id = await new_user(users)
    base = f"/api/v1/users/{user_id}/devices/"
    sub = {**subscription(), "expirationTime": None}  # as the browser's toJSON() has it
    web = await users.post(base, json={"kind": "webpush", "subscription": sub})
    assert web.status_code == 201, web.text
    assert_envelope(web.json(), success=True)
    web_device = web.json()["data"]
    assert web_device["subscription"]["endpoint"] == sub["endpoint"]
    assert web_device["status"] == "live" and web_device["source"] == "api"

    again = await users.post(base, json={"kind": "webpush", "subscription": sub})
    assert again.status_code == 200 and again.json()["data"]["device_id"] == web_device["device_id"]

    token = fcm_token()
    fcm = await users.post(base, json={"kind": "fcm", "token": token})
    assert fcm.status_code == 201 and fcm.json()["data"]["token"] == token

    listed = await users.get(base)
    assert listed.status_code == 200
    assert listed.json()["meta"]["total"] == 2
    assert {d["kind"] for d in listed.json()["data"]} == {"webpush", "fcm"}
    user = (await users.get(f"/api/v1/users/{user_id}/")).json()["data"]
    assert len(user["devices"]) == 2

    one = await users.get(f"{base}{web_device['device_id']}/")
    assert one.status_code == 200 and one.json()["data"] == again.json()["data"]
    gone = await users.delete(f"{base}{web_device['device_id']}/")
    assert gone.status_code == 200
    missing = await users.get(f"{base}{web_device['device_id']}/")
    assert missing.status_code == 404
    assert_envelope(missing.json(), success=False)


async def test_dead_devices_leave_the_live_list_and_come_back_when_registered(
    users: httpx.AsyncClient,
) -> None:
    user_id = await new_user(users)
    base = f"/api/v1/users/{user_id}/devices/"
    sub = subscription()
    device = (await users.post(base, json={"kind": "webpush", "subscription": sub})).json()["data"]
    dead = await users.post(f"{base}{device['device_id']}/dead/", json={"reason": "410 gone"})
    assert dead.status_code == 200
    assert dead.json()["data"]["status"] == "dead"
    assert dead.json()["data"]["dead_reason"] == "410 gone"
    assert (await users.get(base, params={"status": "live"})).json()["data"] == []
    assert len((await users.get(base, params={"status": "dead"})).json()["data"]) == 1

    again = await users.post(base, json={"kind": "webpush", "subscription": sub})
    assert again.status_code == 200 and again.json()["data"]["status"] == "live"


P256DH = BrowserKeys.new().p256dh
AUTH = b64url(b"0123456789abcdef")


@pytest.mark.parametrize(
    ("device", "fragment"),
    [
        (
            {"endpoint": "http://push.example.net/x", "keys": {"p256dh": P256DH, "auth": AUTH}},
            "scheme must be https",
        ),
        (
            {"endpoint": "http://127.0.0.1:9/x", "keys": {"p256dh": P256DH, "auth": AUTH}},
            "scheme must be https",
        ),
        (
            {"endpoint": "https://10.1.2.3/x", "keys": {"p256dh": P256DH, "auth": AUTH}},
            "not a public address",
        ),
        (
            {"endpoint": "push.example.net/x", "keys": {"p256dh": P256DH, "auth": AUTH}},
            "absolute URL",
        ),
        (
            {
                "endpoint": "https://push.example.net/x",
                "keys": {"p256dh": P256DH[:-4], "auth": AUTH},
            },
            "65-byte uncompressed P-256 point",
        ),
        (
            {
                "endpoint": "https://push.example.net/x",
                "keys": {"p256dh": b64url(b"\x04" + b"\x01" * 64), "auth": AUTH},
            },
            "not a point on the P-256 curve",
        ),
        (
            {
                "endpoint": "https://push.example.net/x",
                "keys": {"p256dh": "not base64!", "auth": AUTH},
            },
            "p256dh: not base64url",
        ),
        (
            {
                "endpoint": "https://push.example.net/x",
                "keys": {"p256dh": P256DH, "auth": b64url(b"short auth 15 b")},
            },
            "auth: must be 16 bytes",
        ),
        (
            {
                "endpoint": "https://push.example.net/x",
                "keys": {"p256dh": base64.b64encode(b"\x04" * 65).decode(), "auth": AUTH},
            },
            "p256dh",
        ),
    ],
)
async def test_malformed_subscriptions_are_refused_with_the_reason(
    users: httpx.AsyncClient, device: dict, fragment: str
) -> None:
    user_id = await new_user(users)
    answer = await users.post(
        f"/api/v1/users/{user_id}/devices/", json={"kind": "webpush", "subscription": device}
    )
    assert answer.status_code == 422, answer.text
    assert_envelope(answer.json(), success=False)
    assert fragment in answer.json()["error"]
    assert (await users.get(f"/api/v1/users/{user_id}/devices/")).json()["data"] == []


async def test_a_hex_loopback_endpoint_is_refused_by_the_api(users: httpx.AsyncClient) -> None:
    user_id = await new_user(users)
    answer = await users.post(
        f"/api/v1/users/{user_id}/devices/",
        json={"kind": "webpush", "subscription": subscription("https://0x7f000001/p/1")},
    )
    assert answer.status_code == 422 and "dotted-quad" in answer.json()["error"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"kind": "fcm", "token": "short-token"}, "not an FCM registration token"),
        ({"kind": "fcm", "token": "a" * 99 + "!"}, "not an FCM registration token"),
        ({"kind": "apns", "token": fcm_token()}, "kind"),
        ({"kind": "fcm"}, "token"),
    ],
)
async def test_malformed_tokens_are_refused_with_the_reason(
    users: httpx.AsyncClient, body: dict, fragment: str
) -> None:
    user_id = await new_user(users)
    answer = await users.post(f"/api/v1/users/{user_id}/devices/", json=body)
    assert answer.status_code == 422, answer.text
    assert fragment in answer.json()["error"]


async def test_plain_http_only_on_loopback_and_only_when_allowed(
    dev_users: httpx.AsyncClient,
) -> None:
    user_id = await new_user(dev_users)
    base = f"/api/v1/users/{user_id}/devices/"
    loopback = await dev_users.post(
        base, json={"kind": "webpush", "subscription": subscription("http://127.0.0.1:9/p/1")}
    )
    assert loopback.status_code == 201, loopback.text
    remote = await dev_users.post(
        base, json={"kind": "webpush", "subscription": subscription("http://push.example.net/1")}
    )
    assert remote.status_code == 422 and "https" in remote.json()["error"]


async def test_unknown_user_is_404(users: httpx.AsyncClient) -> None:
    answer = await users.post(
        f"/api/v1/users/{uuid.uuid4()}/devices/", json={"kind": "fcm", "token": fcm_token()}
    )
    assert answer.status_code == 404


async def test_push_token_registers_replaces_and_removes_an_fcm_device(
    users: httpx.AsyncClient,
) -> None:
    first = fcm_token()
    user_id = await new_user(users, push_token=first)
    user = (await users.get(f"/api/v1/users/{user_id}/")).json()["data"]
    assert user["push_token"] == first
    [device] = user["devices"]
    assert device["kind"] == "fcm" and device["token"] == first
    assert device["source"] == "push_token"

    same = await users.patch(f"/api/v1/users/{user_id}/", json={"push_token": first})
    assert [d["device_id"] for d in same.json()["data"]["devices"]] == [device["device_id"]]

    second = fcm_token()
    patched = await users.patch(f"/api/v1/users/{user_id}/", json={"push_token": second})
    assert [d["token"] for d in patched.json()["data"]["devices"]] == [second]

    cleared = await users.patch(f"/api/v1/users/{user_id}/", json={"push_token": None})
    assert cleared.json()["data"]["devices"] == []

    # A push_token that is no FCM token is kept on the user, as before, but is no device.
    legacy = await users.patch(f"/api/v1/users/{user_id}/", json={"push_token": "tok-1"})
    assert legacy.json()["data"]["push_token"] == "tok-1"
    assert legacy.json()["data"]["devices"] == []
