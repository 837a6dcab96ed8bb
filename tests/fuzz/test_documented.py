"""What the schemas document, without running anything: every error answer an operation
can give by its shape, each with the envelope (the fuzzer in test_schemathesis.py checks
the answers themselves)."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.runner import openapi_schemas

SCHEMAS = openapi_schemas()
ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}


def operations() -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (service, method.upper(), path, operation)
        for service, schema in SCHEMAS.items()
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


@pytest.mark.parametrize(
    ("service", "method", "path", "operation"),
    operations(),
    ids=[f"{s} {m} {p}" for s, m, p, _ in operations()],
)
def test_every_error_an_operation_can_give_is_documented_with_the_envelope(
    service: str, method: str, path: str, operation: dict[str, Any]
) -> None:
    responses = operation["responses"]
    expected = {"503"}
    params = operation.get("parameters", [])
    if params or "requestBody" in operation:
        expected.add("422")
    if "requestBody" in operation:
        expected |= {"400", "413"}
    if any(p["in"] == "path" for p in params):
        expected.add("404")
    if operation.get("security"):
        expected |= {"401", "403", "429"}
    assert expected <= set(responses), (service, method, path, sorted(responses))
    for code, response in responses.items():
        if int(code) < 400 or path == "/health":
            continue
        content = response.get("content", {})
        if "text/html" in content:  # a page a browser reads (/unsubscribe/…)
            continue
        assert content["application/json"]["schema"] == ENVELOPE, (path, method, code)


def test_credentials_are_documented_where_routes_take_them() -> None:
    """The bearer scheme shows on the routes that take a caller, and not on those that do
    not (login, the webhook, /health)."""
    gateway = SCHEMAS["gateway"]["paths"]
    assert gateway["/api/v1/notifications/"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in gateway["/api/v1/webhooks/mailgun/"]["post"]
    assert "security" not in gateway["/health"]["get"]
    assert "security" not in SCHEMAS["users"]["paths"]["/api/v1/auth/login/"]["post"]
    for schema in SCHEMAS.values():
        assert "HTTPValidationError" not in str(schema)


@pytest.mark.parametrize(
    ("service", "method", "path", "codes"),
    [
        ("gateway", "post", "/api/v1/notifications/", {"404", "409"}),
        ("gateway", "delete", "/api/v1/notifications/{notification_id}/", {"409"}),
        ("gateway", "post", "/api/v1/webhooks/mailgun/", {"401", "403"}),
        ("users", "post", "/api/v1/users/", {"409"}),
        ("users", "post", "/api/v1/users/{user_id}/devices/", {"409"}),
        ("users", "post", "/api/v1/auth/login/", {"401", "429"}),
        ("templates", "post", "/api/v1/templates/", {"409"}),
    ],
)
def test_the_codes_routes_declare_are_documented(
    service: str, method: str, path: str, codes: set[str]
) -> None:
    """What a route's shape does not tell, declared on it (core.openapi.errors)."""
    responses = SCHEMAS[service]["paths"][path][method]["responses"]
    assert codes <= set(responses), sorted(responses)
    for code in codes:
        assert responses[code]["content"]["application/json"]["schema"] == ENVELOPE
