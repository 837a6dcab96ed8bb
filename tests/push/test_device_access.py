"""Who may reach a user's devices, through the gateway with real credentials: the user
(an access token from login), an API key with users:write, and only the service credential
for the push worker's dead marks. And what the push worker makes of its own credential
being refused."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.credentials import SERVICE_TOKEN
from tests.push.conftest import PushWorld
from tests.push.keys import fcm_token
from tests.scenario import create_user
from tidings.core.breaker import CircuitBreaker
from tidings.core.errors import DependencyUnavailable
from tidings.core.web import ServiceClient, make_http_client
from tidings.push_worker.devices_client import DeviceDirectory

PASSWORD = "a long enough password"


async def user_and_token(gw: httpx.AsyncClient) -> tuple[str, str]:
    """A new user (with one FCM device) and the access token they log in with."""
    email = f"ada-{uuid.uuid4().hex[:10]}@example.com"
    user = await create_user(gw, email=email, password=PASSWORD, push_token=fcm_token())
    async with httpx.AsyncClient(base_url=str(gw.base_url), timeout=10) as anonymous:
        login = await anonymous.post(
            "/api/v1/auth/login/", json={"email": email, "password": PASSWORD}
        )
    assert login.status_code == 200, login.text
    return str(user["user_id"]), str(login.json()["data"]["access_token"])


async def api_key(gw: httpx.AsyncClient, *scopes: str) -> str:
    made = await gw.post(
        "/api/v1/admin/api-keys/", json={"name": f"k-{uuid.uuid4().hex[:6]}", "scopes": scopes}
    )
    assert made.status_code == 201, made.text
    return str(made.json()["data"]["key"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_user_reaches_only_their_own_devices(world: PushWorld) -> None:
    gw = world.system.gateway
    owner, owner_token = await user_and_token(gw)
    _, other_token = await user_and_token(gw)
    base = f"/api/v1/users/{owner}/devices/"
    mine = await gw.get(base, headers=bearer(owner_token))
    assert mine.status_code == 200, mine.text
    [device] = mine.json()["data"]
    one = f"{base}{device['device_id']}/"

    as_other = bearer(other_token)
    attempts = {
        "list": await gw.get(base, headers=as_other),
        "get": await gw.get(one, headers=as_other),
        "add": await gw.post(base, json={"kind": "fcm", "token": fcm_token()}, headers=as_other),
        "delete": await gw.delete(one, headers=as_other),
    }
    assert {what: a.status_code for what, a in attempts.items()} == dict.fromkeys(attempts, 403)
    assert all(a.json()["success"] is False for a in attempts.values())
    after = (await gw.get(base, headers=bearer(owner_token))).json()["data"]
    assert [d["device_id"] for d in after] == [device["device_id"]]  # nothing added or gone


@pytest.mark.parametrize("who", ["the device's own user", "an API key with users:write"])
async def test_only_the_service_credential_marks_a_device_dead(world: PushWorld, who: str) -> None:
    gw = world.system.gateway
    owner, owner_token = await user_and_token(gw)
    token = owner_token if who.startswith("the device") else await api_key(gw, "users:write")
    base = f"/api/v1/users/{owner}/devices/"
    [device] = (await gw.get(base, headers=bearer(token))).json()["data"]
    dead = f"{base}{device['device_id']}/dead/"

    refused = await gw.post(dead, json={"reason": "410 gone"}, headers=bearer(token))
    assert refused.status_code == 403, refused.text
    [still] = (await gw.get(base, headers=bearer(token))).json()["data"]
    assert still["status"] == "live"

    # The push worker's own call, with the service credential, straight to the users service.
    users_url = f"http://127.0.0.1:{world.users_server.config.port}"
    async with httpx.AsyncClient(base_url=users_url, headers=bearer(SERVICE_TOKEN)) as worker:
        marked = await worker.post(dead, json={"reason": "410 gone"})
    assert marked.status_code == 200, marked.text
    assert marked.json()["data"]["status"] == "dead"


@pytest.mark.parametrize("credential", ["not-the-service-token", "another user's token"])
async def test_a_refused_service_credential_makes_the_worker_wait_not_fail(
    world: PushWorld, credential: str
) -> None:
    """401 (unknown credential) or 403 (a credential that may not list this user's
    devices) is the deployment's misconfiguration: DependencyUnavailable (the notification
    waits), not InvalidInput (which escaped the delivery flow and was requeued forever);
    and the refusals open the users breaker, which /health shows."""
    gw = world.system.gateway
    owner, _ = await user_and_token(gw)
    token = credential
    if credential == "another user's token":
        _, token = await user_and_token(gw)
    http = make_http_client(f"http://127.0.0.1:{world.users_server.config.port}", 5.0, token=token)
    breaker = CircuitBreaker("users", failure_threshold=2, reset_timeout_s=60)
    users = ServiceClient("users", http, breaker)
    try:
        for _ in range(2):
            with pytest.raises(DependencyUnavailable) as refused:
                await DeviceDirectory(users).live(owner)
            assert "credential" in refused.value.message
        with pytest.raises(DependencyUnavailable):
            await users.ping()  # what /health runs: the breaker is open
    finally:
        await http.aclose()
