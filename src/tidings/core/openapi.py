"""The OpenAPI schema tells the truth: every error answer an operation can give is in it,
with the envelope's schema (docs/api.md, Conventions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from tidings.core.envelope import REASONS, ErrorEnvelope


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error answers it gives beyond those
    ``document_errors`` derives from its parameters and credential (a 409, a login's 401)."""
    return {code: {"model": ErrorEnvelope, "description": REASONS[code]} for code in codes}


def _derived_codes(operation: dict[str, Any]) -> set[int]:
    """The error answers an operation can give by its shape: every route may find its store
    or a service it calls down (503); a parameter or body can be invalid (422); a body can
    be malformed or too large (400, 413); a resource in the path can be missing (404); a
    credential (``security``, from core.access) can be missing, refused or over its rate
    (401, 403, 429)."""
    codes = {503}
    params = operation.get("parameters", [])
    if params or "requestBody" in operation:
        codes.add(422)
    if "requestBody" in operation:
        codes |= {400, 413}
    if any(p.get("in") == "path" for p in params):
        codes.add(404)
    if operation.get("security"):
        codes |= {401, 403, 429}
    return codes


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add to every operation of ``schema`` (an app's OpenAPI) the error answers it can
    give, each with the envelope's schema; an operation's own entry for a code wins, but
    FastAPI's default 422 (its own error shape, which Tidings never sends) is replaced.
    Done once, here, rather than by hand on every route; a route declares only what its
    shape does not tell (``errors(409)``)."""
    ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorEnvelope"] = ErrorEnvelope.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for code in sorted(_derived_codes(operation)):
                known = responses.get(str(code))
                if known is None or "HTTPValidationError" in str(known):
                    responses[str(code)] = {
                        "description": REASONS[code],
                        "content": {"application/json": {"schema": ref}},
                    }
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    return schema


def truthful_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(FastAPI.openapi(app))
        return app.openapi_schema

    return openapi
