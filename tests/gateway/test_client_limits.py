"""Every kind of credential is rate limited, and so are the attempts that fail: per API key
(test_rate_limits.py), per user's access token, per client address for failed and unverified
authentications (an unknown key is remembered, so a flood of made-up keys costs no query
each), the dashboard's login per address; behind a trusted proxy the address is the one in
X-Forwarded-For. The gateway here trusts its peer (127.0.0.1), so each test speaks as
clients of its own made-up addresses and has its own buckets."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest

from tests.helpers import assert_envelope
from tests.scenario import create_user
from tests.system import System

PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, Any]:
    # Refills too slow to matter within a test: what is counted is the burst.
    return {
        "forwarded_allow_ips": "127.0.0.1",
        "auth_failure_burst": 5,
        "auth_failure_rate_per_s": 0.001,
        "user_burst": 5,
        "user_rate_per_s": 0.001,
        "login_burst": 3,
        "login_rate_per_s": 0.001,
        # Fifty concurrent listings share the pool's 20 connections: on a loaded machine the
        # default 1 s wait for one can run out and open the database breaker (503s), which is
        # not what these tests are about (the pool's bound is tested in tests/faults).
        "db_pool_timeout_s": 30.0,
    }


def client(address: str, token: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": address, "Authorization": ""}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def test_failed_authentications_per_address(system: System) -> None:
    gw = system.gateway
    url = "/api/v1/notifications/"
    codes = [
        (
            await gw.get(url, headers=client("10.1.0.1", f"tid_{secrets.token_urlsafe(8)}"))
        ).status_code
        for _ in range(3)
    ]
    codes += [(await gw.get(url, headers=client("10.1.0.1"))).status_code for _ in range(2)]
    refused = await gw.get(url, headers=client("10.1.0.1", "not.a.jwt"))
    assert codes == [401] * 5, codes
    assert refused.status_code == 429, refused.text
    assert_envelope(refused.json(), success=False)
    assert int(refused.headers["Retry-After"]) >= 1
    # Over the limit, a made-up key is refused before any look-up.
    keys = system.apps["gateway"].state.gateway.api_keys
    before = keys.lookups
    assert (
        await gw.get(url, headers=client("10.1.0.1", f"tid_{secrets.token_urlsafe(8)}"))
    ).status_code == 429
    assert keys.lookups == before
    # Another address has its own bucket.
    assert (await gw.get(url, headers=client("10.1.0.2", "not.a.jwt"))).status_code == 401


async def test_an_unknown_key_is_remembered(system: System) -> None:
    gw = system.gateway
    keys = system.apps["gateway"].state.gateway.api_keys
    made_up = f"tid_{secrets.token_urlsafe(32)}"
    before = keys.lookups
    for n in range(4):  # four addresses, so the address limit is not what stops them
        answer = await gw.get("/api/v1/notifications/", headers=client(f"10.2.0.{n}", made_up))
        assert answer.status_code == 401, answer.text
    assert keys.lookups == before + 1, "a miss costs one query, not one per request"


async def test_a_users_token_is_limited_per_user(system: System) -> None:
    gw = system.gateway
    tokens = []
    for _ in range(2):
        user = await create_user(gw, password=PASSWORD)
        login = await gw.post(
            "/api/v1/auth/login/",
            json={"email": user["email"], "password": PASSWORD},
            headers=client(f"10.3.0.{len(tokens)}"),
        )
        assert login.status_code == 200, login.text
        tokens.append((user["user_id"], login.json()["data"]["access_token"]))
    (alice, alice_token), (bob, bob_token) = tokens
    # From several addresses: the bucket is the user's, not the address's.
    codes = [
        (
            await gw.get(f"/api/v1/users/{alice}/", headers=client(f"10.3.1.{n}", alice_token))
        ).status_code
        for n in range(6)
    ]
    assert codes == [200] * 5 + [429], codes
    assert (
        await gw.get("/api/v1/notifications/", headers=client("10.3.1.9", alice_token))
    ).status_code == 429
    assert (
        await gw.get(f"/api/v1/users/{bob}/", headers=client("10.3.1.9", bob_token))
    ).status_code == 200


async def test_login_buckets_per_forwarded_client(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    wrong = {"email": user["email"], "password": "wrong password"}

    async def attempt(address: str) -> int:
        return (
            await gw.post("/api/v1/auth/login/", json=wrong, headers=client(address))
        ).status_code

    assert [await attempt("10.4.0.1") for _ in range(4)] == [401, 401, 401, 429]
    # Behind one proxy, another client is not held by the first one's attempts.
    assert await attempt("10.4.0.2") == 401


async def test_dashboard_login_per_address(system: System) -> None:
    async with httpx.AsyncClient(base_url=str(system.gateway.base_url), timeout=10) as browser:
        codes = [
            (
                await browser.post(
                    "/dashboard/login",
                    data={"admin_key": f"guess-{n}"},
                    headers={"X-Forwarded-For": "10.5.0.1"},
                )
            ).status_code
            for n in range(4)
        ]
        assert codes == [401, 401, 401, 429], codes
        other = await browser.post(
            "/dashboard/login", data={"admin_key": "x"}, headers={"X-Forwarded-For": "10.5.0.2"}
        )
        assert other.status_code == 401


async def test_concurrent_first_uses_of_a_key_make_one_look_up_and_are_charged_once(
    system: System,
) -> None:
    """Fifty requests with a key the gateway has not cached yet (a new key, or its entry just
    expired) share one look-up: the address's limit of unverified authentications (a burst
    of 5 here) is charged once, so none of them is refused."""
    gw = system.gateway
    made = await gw.post(
        "/api/v1/admin/api-keys/", json={"name": "busy", "scopes": ["notifications:read"]}
    )
    assert made.status_code == 201, made.text
    key = made.json()["data"]["key"]
    keys = system.apps["gateway"].state.gateway.api_keys
    before = keys.lookups
    answers = await asyncio.gather(
        *(gw.get("/api/v1/notifications/", headers=client("10.5.0.1", key)) for _ in range(50))
    )
    assert [a.status_code for a in answers] == [200] * 50, {a.status_code for a in answers}
    assert keys.lookups == before + 1
