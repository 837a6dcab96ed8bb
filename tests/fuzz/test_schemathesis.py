"""Schemathesis against every service's own /openapi.json: no 5xx, every answered status
documented, every answer's body as its schema says. Bounded: EXAMPLES examples per
operation, derandomized (the same examples on every run), each sent with the admin key and
with a client's credential."""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.credentials import ADMIN
from tests.fuzz.conftest import BackgroundSystem
from tidings.runner import openapi_schemas

EXAMPLES = 15
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
BOUNDED = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def call(case: Any, fuzzed: BackgroundSystem, service: str, *headers: dict[str, str]) -> None:
    for credential in headers:
        case.call_and_validate(
            base_url=fuzzed.url(service), headers=credential, checks=CHECKS, timeout=10
        )


# Each service's schema as its app builds it; test_the_schemas_are_the_served_ones shows it
# is the one the running service serves at /openapi.json. (Loaded here, not from a fixture:
# schemathesis.pytest.from_fixture does not run on pytest 9.)
SCHEMAS = openapi_schemas()
gateway = schemathesis.openapi.from_dict(SCHEMAS["gateway"])
users = schemathesis.openapi.from_dict(SCHEMAS["users"])
templates = schemathesis.openapi.from_dict(SCHEMAS["templates"])
email = schemathesis.openapi.from_dict(SCHEMAS["email"])
push = schemathesis.openapi.from_dict(SCHEMAS["push"])


def test_the_schemas_are_the_served_ones(fuzzed: BackgroundSystem) -> None:
    assert fuzzed.system is not None
    # The in-process system runs the five services the fuzzer calls; the webhooks worker's
    # exported schema is checked against its app by tests/docs.
    served_here = set(fuzzed.system.ports)
    assert set(SCHEMAS) - served_here <= {"webhooks"}, served_here
    for service, schema in SCHEMAS.items():
        if service not in served_here:
            continue
        served = httpx.get(f"{fuzzed.url(service)}/openapi.json", timeout=10)
        assert served.status_code == 200, served.text
        assert served.json() == schema, service


@gateway.parametrize()
@BOUNDED
def test_gateway(case: Any, fuzzed: BackgroundSystem, credentials: dict[str, Any]) -> None:
    call(case, fuzzed, "gateway", ADMIN, credentials["api_key"])


@users.parametrize()
@BOUNDED
def test_users(case: Any, fuzzed: BackgroundSystem, credentials: dict[str, Any]) -> None:
    call(case, fuzzed, "users", ADMIN, credentials["user"])


@templates.parametrize()
@BOUNDED
def test_templates(case: Any, fuzzed: BackgroundSystem, credentials: dict[str, Any]) -> None:
    call(case, fuzzed, "templates", ADMIN, credentials["user"])


@email.parametrize()
@BOUNDED
def test_email_worker(case: Any, fuzzed: BackgroundSystem) -> None:
    call(case, fuzzed, "email", ADMIN)


@push.parametrize()
@BOUNDED
def test_push_worker(case: Any, fuzzed: BackgroundSystem) -> None:
    call(case, fuzzed, "push", ADMIN)


def test_the_fuzzer_reached_the_handlers(fuzzed: BackgroundSystem) -> None:
    """After the runs above (pytest keeps a file's order): the request example was accepted,
    so the fuzzer's requests went past validation and the look-ups, not only to a 4xx."""
    answer = httpx.get(
        f"{fuzzed.url('gateway')}/api/v1/notifications/",
        params={"request_id": "signup-42"},
        headers=ADMIN,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    # One per credential it was sent with (request ids are per client): the admin's, the key's.
    assert answer.json()["meta"]["total"] == 2, answer.json()
