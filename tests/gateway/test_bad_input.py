"""Every kind of bad input: a 4xx in the envelope with a readable error, and nothing stored,
queued or sent (counted in the database, then fenced on the SMTP peer)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from tests.helpers import assert_envelope
from tests.scenario import create_template, create_user, notification
from tests.system import System
from tidings.core.errors import InvalidInput
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


# Issue 13: inputs that used to reach PostgreSQL, the UTC conversion or the body hash and
# answer 500. Each is a 422 in the envelope that names the field and the bound.

LISTINGS = [
    "/api/v1/notifications/",
    "/api/v1/templates/",
    "/api/v1/templates/{code}/versions/",
    "/api/v1/users/{user_id}/devices/",
    "/api/v1/admin/dead-letters/",
    "/api/v1/admin/suppressions/",
]


@pytest.fixture(scope="module")
async def listings(system: System, valid: dict[str, Any]) -> list[str]:
    return [url.format(code=valid["template_code"], user_id=valid["user_id"]) for url in LISTINGS]


async def refused(answer: Any, *fragments: str) -> None:
    assert answer.status_code == 422, answer.text
    assert_envelope(answer.json(), success=False)
    for fragment in fragments:
        assert fragment in answer.json()["error"], answer.json()["error"]


@pytest.mark.parametrize("page", [2**63, 2**64, 10**30, 10_001])
async def test_a_page_past_the_bound_is_422_on_every_listing(
    system: System, listings: list[str], page: int
) -> None:
    for url in listings:
        await refused(await system.gateway.get(url, params={"page": page}), "page")
        await refused(await system.gateway.get(url, params={"limit": 2**63}), "limit")


async def test_the_deepest_page_allowed_answers(system: System, listings: list[str]) -> None:
    for url in listings:
        answer = await system.gateway.get(url, params={"page": 10_000, "limit": 100})
        assert answer.status_code == 200, (url, answer.text)
        assert answer.json()["data"] == []


NUL_QUERIES = [
    ("/api/v1/notifications/", "request_id"),
    ("/api/v1/notifications/", "status"),
    ("/api/v1/notifications/", "template_code"),
    ("/api/v1/admin/dead-letters/", "reason_contains"),
    ("/api/v1/admin/dead-letters/", "source_queue"),
]


@pytest.mark.parametrize(("url", "field"), NUL_QUERIES)
async def test_a_nul_in_a_query_filter_is_422(system: System, url: str, field: str) -> None:
    await refused(await system.gateway.get(url, params={field: "a\x00b"}), field, "NUL")


def raw_json(body: dict[str, Any], **strings: str) -> bytes:
    """``body`` with fields whose JSON is written as given (a lone surrogate escape, which
    httpx's own encoder would refuse to write)."""
    text = json.dumps(body)
    for name, escaped in strings.items():
        text = text.replace(f'"{name}": "PLACEHOLDER"', f'"{name}": "{escaped}"')
    return text.encode()


async def test_nul_and_lone_surrogates_in_bodies_are_422(
    system: System, valid: dict[str, Any], pg_database: str
) -> None:
    gw = system.gateway
    before = await counts(pg_database)
    for escaped in ("a\\u0000b", "a\\ud800b"):
        for field in ("request_id",):
            body = raw_json({**valid, field: "PLACEHOLDER"}, **{field: escaped})
            answer = await gw.post(URL, content=body, headers={"content-type": "application/json"})
            await refused(answer, field)
        meta = raw_json({**valid, "metadata": {"note": "PLACEHOLDER"}}, note=escaped)
        answer = await gw.post(URL, content=meta, headers={"content-type": "application/json"})
        await refused(answer, "metadata")
        var = raw_json(
            {**valid, "variables": {**valid["variables"], "x": "PLACEHOLDER"}}, x=escaped
        )
        answer = await gw.post(URL, content=var, headers={"content-type": "application/json"})
        await refused(answer, "variables")
    assert await counts(pg_database) == before
    # The other services' strings: a user's name, a template's body, a suppression's reason.
    await refused(await gw.post("/api/v1/users/", json={"name": "a\x00"}), "name")
    template = {"code": "nul", "channel": "email", "subject": "s", "body": "x\x00"}
    await refused(await gw.post("/api/v1/templates/", json=template), "body")
    suppression = {"address": "nul@example.com", "reason": "x\x00"}
    await refused(await gw.post("/api/v1/admin/suppressions/", json=suppression), "reason")
    await refused(await gw.delete("/api/v1/admin/suppressions/a%00b@example.com/"), "address")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created_after", "0001-01-01T00:00:00+01:00"),
        ("created_before", "0001-01-01T00:00:00+01:00"),
        ("created_after", "9999-12-31T23:59:59-01:00"),
    ],
)
async def test_a_timestamp_outside_utc_years_is_422(system: System, field: str, value: str) -> None:
    await refused(await system.gateway.get(URL, params={field: value}), field, "9999")


async def test_send_at_outside_utc_years_is_422(system: System, valid: dict[str, Any]) -> None:
    body = {**valid, "send_at": "0001-01-01T00:00:00+01:00"}
    await refused(await system.gateway.post(URL, json=body), "send_at", "9999")


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = {"a": value}
    return {"a": value} if depth else value


def deep_json(body: dict[str, Any], field: str, depth: int) -> bytes:
    """``body`` with ``field`` nested ``depth`` objects deep, written as text (json.dumps
    stops at Python's recursion limit)."""
    text = json.dumps({**body, field: "PLACEHOLDER"})
    return text.replace('"PLACEHOLDER"', '{"a": ' * depth + '"leaf"' + "}" * depth).encode()


@pytest.mark.parametrize("depth", [33, 300, 5000])
async def test_variables_and_metadata_nested_past_the_bound_are_422(
    system: System, valid: dict[str, Any], pg_database: str, depth: int
) -> None:
    before = await counts(pg_database)
    json_type = {"content-type": "application/json"}
    inner = {**valid, "variables": {**valid["variables"], "deep": "PLACEHOLDER"}}
    text = json.dumps(inner).replace('"PLACEHOLDER"', '{"a": ' * depth + '"leaf"' + "}" * depth)
    answers = [
        await system.gateway.post(URL, content=text.encode(), headers=json_type),
        await system.gateway.post(
            URL, content=deep_json(valid, "metadata", depth), headers=json_type
        ),
    ]
    for answer, field in zip(answers, ("variables", "metadata"), strict=True):
        if depth > 900:  # past what the JSON parser nests: malformed, a 400
            assert answer.status_code == 400, answer.text
            assert_envelope(answer.json(), success=False)
        else:
            await refused(answer, field, "nested deeper than 32")
    assert await counts(pg_database) == before


async def test_variables_within_the_bounds_are_accepted(
    system: System, valid: dict[str, Any]
) -> None:
    body = {
        **valid,
        "request_id": valid["request_id"] + "-deep-ok",
        "variables": {**valid["variables"], "deep": nested(30), "big": 2**63 - 1},
    }
    answer = await system.gateway.post(URL, json=body)
    assert answer.status_code == 202, answer.text
    await system.smtp.next()  # delivered; the fence below expects an empty inbox


async def test_an_integer_past_64_bits_is_422(system: System, valid: dict[str, Any]) -> None:
    body = {**valid, "variables": {**valid["variables"], "big": 2**64}}
    await refused(await system.gateway.post(URL, json=body), "variables", "64-bit")


async def test_a_nul_request_id_in_a_group_fails_only_its_own_lookup(
    system: System, valid: dict[str, Any]
) -> None:
    """Request-id look-ups are grouped (core.batching): one unstorable id among them is
    refused alone; the others of its group get their answers."""
    service = system.apps["gateway"].state.gateway.acceptance
    known = await system.gateway.post(URL, json={**valid, "request_id": "group-known"})
    assert known.status_code == 202, known.text
    await system.smtp.next()
    answers = await asyncio.gather(
        *(
            service._by_request_id("admin", r)
            for r in ("group-known", "bad\x00id", "group-missing")
        ),
        return_exceptions=True,
    )
    assert answers[0] is not None and answers[0].request_id == "group-known", answers
    assert isinstance(answers[1], InvalidInput), answers
    assert answers[2] is None, answers
    # Through a batch too: the NUL item is rejected, the others accepted.
    items = [
        {**valid, "request_id": "batch-nul\x00"},
        {**valid, "request_id": "batch-good-1"},
        {**valid, "request_id": "batch-good-2"},
    ]
    answer = await system.gateway.post(f"{URL}batch/", json={"notifications": items})
    assert answer.status_code == 202, answer.text
    outcomes = [r["outcome"] for r in answer.json()["data"]]
    assert outcomes == ["rejected", "accepted", "accepted"], answer.json()
    await system.smtp.next()
    await system.smtp.next()


async def test_nothing_bad_was_sent(system: System, valid: dict[str, Any]) -> None:
    """Fence: after every refusal above, the next good notification is the only mail."""
    answer = await system.gateway.post(URL, json=valid)
    assert answer.status_code == 202
    assert (await system.smtp.next()).message["X-Request-ID"] == valid["request_id"]
    assert system.smtp.arrivals.empty()
