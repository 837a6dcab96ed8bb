"""Every kind of bad input: a 4xx in the envelope with a readable error, and nothing stored,
queued or sent (counted in the database, then fenced on the SMTP peer)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from tests.helpers import assert_envelope
from tests.scenario import create_template, create_user, notification
from tests.system import System
from tidings.gateway.settings import GatewaySettings

URL = "/api/v1/notifications/"


async def counts(database_url: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM gateway.notifications),"
            " (SELECT count(*) FROM gateway.notification_events),"
            " (SELECT count(*) FROM gateway.outbox)"
        )
    finally:
        await conn.close()
    assert row is not None
    return (row[0], row[1], row[2])


@pytest.fixture(scope="module")
async def valid(system: System) -> dict[str, Any]:
    user = await create_user(system.gateway)
    template = await create_template(system.gateway)
    return notification(user["user_id"], template["code"])


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


def variables(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**body, "variables": {**body["variables"], **changes}}


CASES: list[tuple[str, Any, int, str]] = [
    ("malformed JSON", b'{"notification_type": "email",', 400, "malformed JSON"),
    ("body is a list", [1, 2], 422, "body"),
    ("body is a string", "hello", 422, "body"),
    ("missing field", lambda b: without(b, "template_code"), 422, "template_code"),
    ("missing variables.link", lambda b: {**b, "variables": {"name": "x"}}, 422, "variables.link"),
    ("wrong type", lambda b: {**b, "priority": "high"}, 422, "priority"),
    (
        "unknown notification_type",
        lambda b: {**b, "notification_type": "sms"},
        422,
        "notification_type",
    ),
    ("non-UUID user_id", lambda b: {**b, "user_id": "42"}, 422, "user_id"),
    ("ftp link", lambda b: variables(b, link="ftp://example.com/x"), 422, "variables.link"),
    ("javascript link", lambda b: variables(b, link="javascript:alert(1)"), 422, "variables.link"),
    ("empty request_id", lambda b: {**b, "request_id": ""}, 422, "request_id"),
    ("blank request_id", lambda b: {**b, "request_id": "   "}, 422, "request_id"),
    (
        "template_code with a slash",
        lambda b: {**b, "template_code": "x/versions"},
        422,
        "template_code",
    ),
    ("priority out of range", lambda b: {**b, "priority": 99}, 422, "priority"),
    ("unknown top-level field", lambda b: {**b, "sendAt": "now"}, 422, "sendAt"),
]


@pytest.mark.parametrize(("case", "make", "status", "fragment"), CASES, ids=[c[0] for c in CASES])
async def test_bad_notification_is_refused_and_changes_nothing(
    system: System,
    valid: dict[str, Any],
    pg_database: str,
    case: str,
    make: Any,
    status: int,
    fragment: str,
) -> None:
    before = await counts(pg_database)
    if isinstance(make, bytes):
        answer = await system.gateway.post(
            URL, content=make, headers={"content-type": "application/json"}
        )
    elif callable(make):
        body = make({**valid, "request_id": valid["request_id"] + case.replace(" ", "-")})
        answer = await system.gateway.post(URL, json=body)
    else:
        answer = await system.gateway.post(URL, json=make)
    assert answer.status_code == status, answer.text
    assert_envelope(answer.json(), success=False)
    assert fragment in answer.json()["error"], answer.json()["error"]
    assert await counts(pg_database) == before


async def test_body_over_the_limit_is_413(
    system: System, valid: dict[str, Any], pg_database: str
) -> None:
    before = await counts(pg_database)
    limit = GatewaySettings.model_fields["max_body_bytes"].default
    huge = {**valid, "metadata": {"blob": "x" * (limit + 10)}}
    answer = await system.gateway.post(URL, json=huge)
    assert answer.status_code == 413
    assert_envelope(answer.json(), success=False)

    async def chunks():  # no Content-Length: counted as it streams
        yield json.dumps(huge).encode()

    streamed = await system.gateway.post(
        URL, content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert_envelope(streamed.json(), success=False)
    assert await counts(pg_database) == before


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/nothing-here/", 404),
        ("DELETE", "/health", 405),
        ("PUT", URL, 405),
        ("GET", "/api/v1/notifications/not-a-uuid/", 422),
        ("GET", "/api/v1/notifications/00000000-0000-0000-0000-000000000000/", 404),
        ("POST", "/api/v1/sms/status/", 422),
    ],
)
async def test_unknown_routes_and_methods_answer_in_the_envelope(
    system: System, method: str, path: str, status: int
) -> None:
    answer = await system.gateway.request(method, path, json={})
    assert answer.status_code == status, answer.text
    assert_envelope(answer.json(), success=False)


async def test_cr_lf_never_creates_a_header(system: System, valid: dict[str, Any]) -> None:
    """CR/LF in the user's name, the request id and a variable that reaches the subject."""
    gw = system.gateway
    user = await create_user(gw, name="Mallory\r\nBcc: victim@example.com")
    template = await create_template(gw, subject="Hi {{ name }}")
    body = notification(
        user["user_id"],
        template["code"],
        request_id="req-crlf\r\nBcc: victim2@example.com",
        variables={"name": "Eve\r\nX-Injected: yes", "link": "https://example.com"},
    )
    answer = await gw.post(URL, json=body)
    assert answer.status_code == 202, answer.text
    received = await system.smtp.next()
    msg = received.message
    assert received.rcpt_tos == [user["email"]]
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["Subject"] == "Hi Eve X-Injected: yes"
    assert msg["X-Request-ID"] == "req-crlf Bcc: victim2@example.com"


async def test_nothing_bad_was_sent(system: System, valid: dict[str, Any]) -> None:
    """Fence: after every refusal above, the next good notification is the only mail."""
    answer = await system.gateway.post(URL, json=valid)
    assert answer.status_code == 202
    assert (await system.smtp.next()).message["X-Request-ID"] == valid["request_id"]
    assert system.smtp.arrivals.empty()
