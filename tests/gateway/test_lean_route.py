"""The accept route is served without FastAPI's per-request dependency solving
(core.web.lean), and says what it said before: its answers, errors and order are checked by
test_accept_body, test_accept_limits and test_auth; here, that FastAPI is not asked."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import routing

from tests.scenario import create_template, create_user, notification
from tests.system import System


async def test_the_accept_route_solves_no_dependencies_through_fastapi(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await create_user(system.gateway)
    template = await create_template(system.gateway)
    solved: list[str] = []
    real = routing.solve_dependencies

    async def counted(*args: Any, **kwargs: Any) -> Any:
        path = kwargs["request"].url.path  # the look-ups of the users and templates: theirs
        if path.startswith("/api/v1/notifications/"):
            solved.append(path)
        return await real(*args, **kwargs)

    monkeypatch.setattr(routing, "solve_dependencies", counted)
    body = notification(user["user_id"], template["code"])
    answer = await system.gateway.post("/api/v1/notifications/", json=body)
    assert answer.status_code == 202, answer.text
    assert answer.headers["x-correlation-id"]
    again = await system.gateway.post("/api/v1/notifications/", json=body)
    assert again.status_code == 202 and again.json()["data"] == answer.json()["data"]
    malformed = await system.gateway.post(
        "/api/v1/notifications/", content=b"{", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400, malformed.text
    assert solved == [], solved
    # The other methods of the path are FastAPI's routes, as before.
    listed = await system.gateway.get("/api/v1/notifications/")
    assert listed.status_code == 200, listed.text
    assert solved == ["/api/v1/notifications/"], solved
    wrong = await system.gateway.put("/api/v1/notifications/")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
