"""The accept route parses its body itself (gateway.accept_body: ``model_validate_json`` on
the raw bytes): what a client sees is what FastAPI answered when it parsed the declared
body. Each body here is sent to the gateway and to an app that declares the body as the
route did, with the same error handlers: the same status and the same envelope."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.scenario import create_template, create_user, notification
from tests.system import System
from tidings.core.web.handlers import install_error_handlers
from tidings.gateway.schemas import NotificationCreate

URL = "/api/v1/notifications/"
JSON = "application/json"


def declared() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post(URL, status_code=202)
    async def send(body: NotificationCreate) -> dict[str, Any]:
        return {"request_id": body.request_id}

    return app


def cases(valid: dict[str, Any]) -> list[tuple[str, bytes, str | None]]:
    """(what, raw body, content type)."""

    def body(**changes: Any) -> bytes:
        return json.dumps({**valid, **changes}).encode()

    missing = {k: v for k, v in valid.items() if k != "template_code"}
    deep: Any = {}
    for _ in range(40):
        deep = {"x": deep}
    return [
        ("malformed", b'{"user_id": ', JSON),
        ("not UTF-8", b"\xff\xfe{}", JSON),
        ("empty", b"", JSON),
        ("no content type", body(), None),
        ("text", body(), "text/plain"),
        ("a list", b"[]", JSON),
        ("null", b"null", JSON),
        ("a string", b'"x"', JSON),
        ("a field missing", json.dumps(missing).encode(), JSON),
        ("an extra field", body(colour="red"), JSON),
        ("a bad uuid", body(user_id="nope"), JSON),
        ("a bad channel", body(notification_type="fax"), JSON),
        ("priority past 9", body(priority=10), JSON),
        ("priority a float", body(priority=5.5), JSON),
        ("priority a string", body(priority="5"), JSON),
        ("priority true", body(priority=True), JSON),
        ("request_id with NUL", body(request_id="a\x00b"), JSON),
        ("request_id blank", body(request_id="   "), JSON),
        ("a lone surrogate", body().replace(b'"req-', b'"\\ud800req-'), JSON),
        ("variables a list", body(variables=[1]), JSON),
        ("variables deep", body(variables={**valid["variables"], "x": deep}), JSON),
        ("past the parser's depth", body(metadata="X").replace(b'"X"', b'{"a":' * 5000), JSON),
        ("metadata past 64 bits", body(metadata={"n": 2**64}), JSON),
        ("send_at not a time", body(send_at="soon"), JSON),
        ("send_at past a year", body(send_at="2999-01-01T00:00:00Z"), JSON),
        ("send_at outside UTC years", body(send_at="0001-01-01T00:00:00+01:00"), JSON),
        ("a charset", body(), "application/json; charset=utf-8"),
        ("a +json type", body(), "application/vnd.tidings+json"),
        ("a duplicate key", body()[:-1] + b', "priority": 11}', JSON),
        ("NaN", body()[:-1] + b', "metadata": {"x": NaN}}', JSON),
        ("valid", body(), JSON),
    ]


@pytest.fixture
async def valid(system: System) -> dict[str, Any]:
    user = await create_user(system.gateway)
    template = await create_template(system.gateway)
    return notification(user["user_id"], template["code"])


async def test_every_body_is_answered_as_fastapi_answered_it(
    system: System, valid: dict[str, Any]
) -> None:
    reference = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=declared()), base_url="http://declared"
    )
    async with reference:
        for what, raw, content_type in cases(valid):
            headers = {"Content-Type": content_type or ""}  # "": as good as none
            raw = raw.replace(b"req-", f"req-{len(what)}-{what[:3]}-".encode(), 1)
            ours = await system.gateway.post(URL, content=raw, headers=headers)
            theirs = await reference.post(URL, content=raw, headers=headers)
            assert ours.status_code == theirs.status_code, (what, ours.text, theirs.text)
            if theirs.status_code != 202:
                assert ours.json() == theirs.json(), what
