"""The users/templates proxy forwards only the routes of its table, with normalised paths:
a dot-segment or an encoded separator cannot turn a users path into the login route (and so
around the login limit), nor reach a route of the service the gateway does not offer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import assert_envelope
from tests.scenario import create_user
from tests.system import System


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, Any]:
    return {"login_burst": 10, "login_rate_per_s": 0.01}  # the default burst, no refill


TRAVERSALS = [
    "/api/v1/users/..%2Fauth%2Flogin%2F",
    "/api/v1/users/..%2fauth%2flogin%2f",
    "/api/v1/users/%2E%2E/auth/login/",
    "/api/v1/users/%252E%252E%252Fauth%252Flogin%252F",
    "/api/v1/users/..%5Cauth%5Clogin%5C",
    "/api/v1/templates/..%2Fauth%2Flogin%2F",
    "/api/v1/users/x/..%2F..%2Fauth%2Flogin%2F",
]


async def test_traversals_do_not_reach_login_and_the_limit_holds(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    wrong = {"email": user["email"], "password": "wrong password"}
    # Measured on main: through this path, 15 of 15 bad passwords answered 401, never 429.
    for path in TRAVERSALS * 2:
        answer = await gw.post(path, json=wrong, headers={"Authorization": "Bearer tid_x"})
        assert answer.status_code in (401, 404), (path, answer.text)
        assert_envelope(answer.json(), success=False)
        with_admin = await gw.post(path, json=wrong)
        assert with_admin.status_code == 404, (path, with_admin.text)
        assert_envelope(with_admin.json(), success=False)
    # The one path to login is limited per address: 429 once the burst (10) is spent.
    codes = [
        (await gw.post("/api/v1/auth/login/", json=wrong, headers={})).status_code
        for _ in range(12)
    ]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes


async def test_only_the_routes_of_the_table(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    uid = user["user_id"]
    # Routes the services do not have, or methods they do not take there: 404, like any
    # unknown path, without a trip to the service.
    for method, path in [
        ("DELETE", f"/api/v1/users/{uid}/"),
        ("PUT", f"/api/v1/users/{uid}/"),
        ("GET", f"/api/v1/users/{uid}/secrets/"),
        ("GET", "/api/v1/users/./"),
        ("GET", f"/api/v1/users//{uid}/"),
        ("DELETE", "/api/v1/templates/x/"),
        ("GET", "/api/v1/templates/x/versions/y/"),
    ]:
        answer = await gw.request(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
        assert_envelope(answer.json(), success=False)
    # The table's routes still go through, with or without the trailing slash.
    assert (await gw.get(f"/api/v1/users/{uid}/")).status_code == 200
    assert (await gw.get(f"/api/v1/users/{uid}")).status_code == 200
    assert (await gw.get(f"/api/v1/users/{uid}/devices/")).status_code == 200
    assert (await gw.get("/api/v1/templates/")).status_code == 200


def test_the_table_is_the_services_routes() -> None:
    """Every route of the table exists in its service with that method, and every API
    route of the users and templates services is in the table."""
    from tests.credentials import SETTINGS
    from tidings.gateway.proxy import ROUTES
    from tidings.templates.app import create_app as templates_app
    from tidings.templates.settings import TemplatesSettings
    from tidings.users.app import create_app as users_app
    from tidings.users.settings import UsersSettings

    served = set()
    for app in (users_app(UsersSettings(**SETTINGS)), templates_app(TemplatesSettings(**SETTINGS))):
        for path, item in app.openapi()["paths"].items():
            if path.startswith("/api/"):
                for method in item:
                    generic = "/".join("{id}" if s.startswith("{") else s for s in path.split("/"))
                    served.add((method.upper(), generic))
    table = {route for routes in ROUTES.values() for route in routes}
    assert table == served
