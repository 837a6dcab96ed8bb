"""The auth matrix: every endpoint refuses a missing credential (401), a wrong one (401), one
without the scope (403) and another user's token (403), and accepts the right one; another
client's notification is not there (404); every route of the gateway is either closed
(401 without a credential) or open by choice (docs/auth.md)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.credentials import SERVICE_TOKEN
from tests.helpers import assert_envelope
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System

PASSWORD = "a long enough password"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def world(system: System) -> dict[str, Any]:
    gw = system.gateway
    keys = {}
    for scope in (
        "notifications:send",
        "notifications:read",
        "notifications:read_all",
        "users:write",
        "templates:write",
    ):
        answer = await gw.post("/api/v1/admin/api-keys/", json={"name": scope, "scopes": [scope]})
        assert answer.status_code == 201, answer.text
        keys[scope] = answer.json()["data"]["key"]
    alice = await create_user(gw, password=PASSWORD)
    bob = await create_user(gw, password=PASSWORD)
    tokens = {}
    for name, user in (("alice", alice), ("bob", bob)):
        login = await gw.post(
            "/api/v1/auth/login/", json={"email": user["email"], "password": PASSWORD}, headers={}
        )
        assert login.status_code == 200, login.text
        tokens[name] = login.json()["data"]["access_token"]
    template = await create_template(gw)
    sent = await gw.post(
        "/api/v1/notifications/", json=notification(alice["user_id"], template["code"])
    )
    nid = sent.json()["data"]["notification_id"]
    await wait_for_status(gw, nid, "delivered")
    return {
        "keys": keys,
        "alice": alice,
        "bob": bob,
        "tokens": tokens,
        "template": template,
        "nid": nid,
    }


Call = Callable[[httpx.AsyncClient, dict[str, Any], dict[str, str]], Awaitable[httpx.Response]]
# Answers other than 403 for a key without the call's scope: the notification was made by
# the admin, so a key that may read only its own does not find it; read_all includes read.
OTHER_KEYS = {
    ("read notification", "notifications:read"): 404,
    ("list notifications", "notifications:read_all"): 200,
}


def _calls() -> list[tuple[str, Call, str | None]]:
    """(name, the call, the API-key scope that allows it; None: the service credential)."""
    return [
        (
            "send",
            lambda c, w, h: c.post(
                "/api/v1/notifications/",
                json=notification(w["alice"]["user_id"], w["template"]["code"]),
                headers=h,
            ),
            "notifications:send",
        ),
        (
            "read notification",
            lambda c, w, h: c.get(f"/api/v1/notifications/{w['nid']}/", headers=h),
            "notifications:read_all",
        ),
        (
            "list notifications",
            lambda c, w, h: c.get("/api/v1/notifications/", headers=h),
            "notifications:read",
        ),
        (
            "batch",
            lambda c, w, h: c.post(
                "/api/v1/notifications/batch/",
                json={
                    "notifications": [notification(w["alice"]["user_id"], w["template"]["code"])]
                },
                headers=h,
            ),
            "notifications:send",
        ),
        (
            "create user",
            lambda c, w, h: c.post(
                "/api/v1/users/",
                json={
                    "name": "N",
                    "email": f"n-{uuid.uuid4().hex[:8]}@example.com",
                    "push_token": None,
                    "preferences": {"email": True, "push": True},
                    "password": PASSWORD,
                },
                headers=h,
            ),
            "users:write",
        ),
        (
            "read user",
            lambda c, w, h: c.get(f"/api/v1/users/{w['alice']['user_id']}/", headers=h),
            "users:write",
        ),
        (
            "update user",
            lambda c, w, h: c.patch(
                f"/api/v1/users/{w['alice']['user_id']}/", json={"name": "Alice"}, headers=h
            ),
            "users:write",
        ),
        (
            "create template",
            lambda c, w, h: c.post(
                "/api/v1/templates/",
                json={
                    "code": f"t-{uuid.uuid4().hex[:8]}",
                    "channel": "email",
                    "subject": "s",
                    "body": "b",
                },
                headers=h,
            ),
            "templates:write",
        ),
        (
            "render template",
            lambda c, w, h: c.post(
                f"/api/v1/templates/{w['template']['code']}/render/",
                json={"variables": {"name": "Ada", "link": "https://example.com/", "meta": None}},
                headers=h,
            ),
            "templates:write",
        ),
        (
            "status",
            lambda c, w, h: c.post(
                "/api/v1/email/status/",
                json={"notification_id": w["nid"], "status": "delivered"},
                headers=h,
            ),
            None,
        ),
        ("dead letters", lambda c, w, h: c.get("/api/v1/admin/dead-letters/", headers=h), "admin"),
        ("api keys", lambda c, w, h: c.get("/api/v1/admin/api-keys/", headers=h), "admin"),
    ]


CALLS = _calls()


@pytest.mark.parametrize(("name", "call", "scope"), CALLS, ids=[c[0] for c in CALLS])
async def test_auth_matrix(
    system: System, world: dict[str, Any], name: str, call: Call, scope: str | None
) -> None:
    gw = system.gateway
    refusals = {
        "no credential": ({"Authorization": ""}, 401),
        "wrong key": (bearer("tid_not-a-real-key"), 401),
        "garbage token": (bearer("not.a.jwt"), 401),
    }
    for other in world["keys"]:
        if other != scope:
            expected = OTHER_KEYS.get((name, other), 403)
            refusals[f"key with {other}"] = (bearer(world["keys"][other]), expected)
    for label, (headers, status) in refusals.items():
        answer = await call(gw, world, headers)
        assert answer.status_code == status, f"{name} with {label}: {answer.text}"
        assert_envelope(answer.json(), success=status < 300)
    allowed = bearer(SERVICE_TOKEN if scope is None else world["keys"].get(scope, ""))
    if scope == "admin":
        allowed = gw.headers  # the admin key
    answer = await call(gw, world, dict(allowed))
    assert answer.status_code < 300, f"{name} with the right credential: {answer.text}"


async def test_a_user_reaches_their_own_data_and_nobody_elses(
    system: System, world: dict[str, Any]
) -> None:
    gw = system.gateway
    alice, bob = bearer(world["tokens"]["alice"]), bearer(world["tokens"]["bob"])
    alice_id, bob_id = world["alice"]["user_id"], world["bob"]["user_id"]
    assert (await gw.get(f"/api/v1/users/{alice_id}/", headers=alice)).status_code == 200
    own = await gw.patch(
        f"/api/v1/users/{alice_id}/", json={"preferences": {"push": False}}, headers=alice
    )
    assert own.status_code == 200, own.text
    assert (
        await gw.get(f"/api/v1/notifications/{world['nid']}/", headers=alice)
    ).status_code == 200
    # Another user's notification is not even said to exist.
    hidden = await gw.get(f"/api/v1/notifications/{world['nid']}/", headers=bob)
    assert hidden.status_code == 404
    for answer in (
        await gw.get(f"/api/v1/users/{bob_id}/", headers=alice),
        await gw.patch(f"/api/v1/users/{bob_id}/", json={"name": "x"}, headers=alice),
        await gw.post(
            "/api/v1/templates/",
            json={"code": "x", "channel": "email", "subject": "s", "body": "b"},
            headers=alice,
        ),
        await gw.post(
            "/api/v1/email/status/",
            json={"notification_id": world["nid"], "status": "failed"},
            headers=alice,
        ),
        await gw.post(
            "/api/v1/notifications/",
            json=notification(alice_id, world["template"]["code"]),
            headers=alice,
        ),
    ):
        assert answer.status_code == 403, answer.text
        assert_envelope(answer.json(), success=False)


async def test_login_refresh_and_wrong_password(system: System, world: dict[str, Any]) -> None:
    gw = system.gateway
    email = world["alice"]["email"]
    wrong = await gw.post(
        "/api/v1/auth/login/", json={"email": email, "password": "nope"}, headers={}
    )
    unknown = await gw.post(
        "/api/v1/auth/login/", json={"email": "who@example.com", "password": "x"}, headers={}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"] == unknown.json()["error"], "no hint which one was wrong"
    login = await gw.post(
        "/api/v1/auth/login/", json={"email": email, "password": PASSWORD}, headers={}
    )
    tokens = login.json()["data"]
    refreshed = await gw.post(
        "/api/v1/auth/refresh/", json={"refresh_token": tokens["refresh_token"]}, headers={}
    )
    assert refreshed.status_code == 200
    new_access = refreshed.json()["data"]["access_token"]
    me = await gw.get(f"/api/v1/users/{world['alice']['user_id']}/", headers=bearer(new_access))
    assert me.status_code == 200
    # An access token is not a refresh token, and the other way round.
    assert (
        await gw.post("/api/v1/auth/refresh/", json={"refresh_token": new_access}, headers={})
    ).status_code == 401
    as_access = bearer(tokens["refresh_token"])
    assert (
        await gw.get(f"/api/v1/users/{world['alice']['user_id']}/", headers=as_access)
    ).status_code == 401


async def test_revoked_key_and_services_behind_the_gateway(
    system: System, world: dict[str, Any]
) -> None:
    gw = system.gateway
    made = await gw.post("/api/v1/admin/api-keys/", json={"name": "t", "scopes": ["users:write"]})
    key, key_id = made.json()["data"]["key"], made.json()["data"]["api_key_id"]
    assert (await gw.delete(f"/api/v1/admin/api-keys/{key_id}/")).status_code == 200
    revoked = await gw.get(f"/api/v1/users/{world['alice']['user_id']}/", headers=bearer(key))
    assert revoked.status_code == 401
    listed = (await gw.get("/api/v1/admin/api-keys/")).json()["data"]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    # The users service itself: API keys only count at the gateway, and a principal token
    # must be signed with the secret key.
    users = f"http://127.0.0.1:{system.ports['users']}/api/v1/users/{world['alice']['user_id']}/"
    direct = await gw.get(users, headers=bearer(world["keys"]["users:write"]))
    assert direct.status_code == 401
    forged = await gw.get(users, headers={"X-Tidings-Principal": "eyJhbGciOiJub25lIn0.e30."})
    assert forged.status_code == 401
    assert (await gw.get(users, headers=bearer(SERVICE_TOKEN))).status_code == 200
    # The service token is not the admin key.
    assert (
        await gw.get("/api/v1/admin/api-keys/", headers=bearer(SERVICE_TOKEN))
    ).status_code == 403
    # The gateway ignores a principal token sent from outside: the caller is the key's.
    sealed = {"X-Tidings-Principal": "anything", **bearer(world["keys"]["users:write"])}
    assert (await gw.get("/api/v1/admin/api-keys/", headers=sealed)).status_code == 403


# Open without a credential, by choice (docs/auth.md "What is open").
OPEN = {
    ("GET", "/health"),  # up or down only; the details need the admin key or service token
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("POST", "/api/v1/auth/{path:path}"),  # login and refresh, limited per address
    ("GET", "/api/v1/push/vapid-public-key/"),
    ("GET", "/push-demo/"),
    ("GET", "/push-demo/demo.js"),
    ("GET", "/push-demo/sw.js"),
    ("GET", "/dashboard/login"),
    ("GET", "/dashboard/static/{name}"),  # our script and the vendored chart library
    ("GET", "/preferences/static/preference_centre.js"),
}
# Each with a credential of its own: the signed link's token, the provider's signature, the
# admin key in the dashboard's login form (limited per address).
OWN_CREDENTIAL = {
    ("POST", "/dashboard/login"),
    ("GET", "/unsubscribe/{token}/"),
    ("POST", "/unsubscribe/{token}/"),
    ("GET", "/preferences/{token}/"),
    ("POST", "/preferences/{token}/"),
    ("POST", "/api/v1/webhooks/mailgun/"),
}


def _routes(routes: list[Any]) -> list[Any]:
    """Every route, those of included routers too (FastAPI keeps them behind a wrapper)."""
    found = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        found.extend(_routes(inner.routes) if inner is not None else [route])
    return found


def _example(path: str) -> str:
    """A path of the route with its parameters filled in with values of the right type."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "dead_letter_id":
            return "1"
        return str(uuid.uuid4()) if name.endswith("_id") else "x"

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, path)


async def test_every_route_is_closed_or_open_by_choice(system: System) -> None:
    routes = {
        (method, route.path)
        for route in _routes(system.apps["gateway"].routes)
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD"
    }
    assert routes >= OPEN | OWN_CREDENTIAL, "a route named here no longer exists"
    async with httpx.AsyncClient(base_url=str(system.gateway.base_url), timeout=10) as anonymous:
        for method, path in sorted(routes):
            answer = await anonymous.request(method, _example(path), follow_redirects=False)
            where = f"{method} {path}: {answer.status_code} {answer.text[:200]}"
            if (method, path) in OPEN:
                assert answer.status_code < 500 and answer.status_code not in (401, 403), where
            elif (method, path) in OWN_CREDENTIAL:
                assert answer.status_code in (400, 401, 422), where
            elif path.startswith("/dashboard/"):
                # Without a session: to the login page (pages), 401 (its JSON calls).
                assert answer.status_code in (303, 401), where
                if answer.status_code == 303:
                    assert answer.headers["location"] == "/dashboard/login", where
            else:
                assert answer.status_code == 401, where
                assert_envelope(answer.json(), success=False)
        health = await anonymous.get("/health")
        assert health.json()["data"] == {"status": "ok"}, health.text
        assert (await anonymous.get("/metrics", headers=system.gateway.headers)).status_code == 200
