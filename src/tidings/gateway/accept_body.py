"""The accept route's body: parsed and validated by pydantic from the raw bytes in one step
(``model_validate_json``), where FastAPI would decode the JSON with the ``json`` module and
then validate the objects it made (docs/performance.md).

What a client sees is FastAPI's own, by construction: a body the fast path refuses, or one
it does not take (no JSON content type, an empty body), is parsed again the way FastAPI
parses a declared body (``_as_fastapi_would``, written after fastapi.routing's request
handler and ``request_body_to_args``), so its errors are FastAPI's, word for word, and in
FastAPI's order: malformed JSON is a 400 before the credential is looked at, an invalid body
a 422 after it and its rate limit (the route raises ``error``). The route declares the
request body in its ``openapi_extra`` (``OPENAPI``): the schema is the one FastAPI made.
"""

from __future__ import annotations

import email.message
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import ValidationError

from tidings.gateway.schemas import NotificationCreate

_JSON = "application/json"
OPENAPI: dict[str, Any] = {
    "requestBody": {
        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/NotificationCreate"}}},
        "required": True,
    }
}


@dataclass(frozen=True)
class ParsedBody:
    """The notification, or the 422 to answer once the caller is known and within its
    limit."""

    body: NotificationCreate | None
    error: RequestValidationError | None = None


async def parse_accept_body(request: Request) -> ParsedBody:
    try:
        raw = await request.body()
    except Exception as exc:  # a client gone mid-body: FastAPI's answer
        raise HTTPException(400, "There was an error parsing the body") from exc
    if raw and request.headers.get("content-type") == _JSON:
        try:
            return ParsedBody(NotificationCreate.model_validate_json(raw))
        except ValidationError:
            pass  # parsed again below, for FastAPI's errors
    return _as_fastapi_would(request, raw)


def _as_fastapi_would(request: Request, raw: bytes) -> ParsedBody:
    """FastAPI's parse of a declared body (strict content type, its default)."""
    value: Any = raw
    content_type = request.headers.get("content-type")
    if raw and content_type:
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        if message.get_content_maintype() == "application" and (
            subtype == "json" or subtype.endswith("+json")
        ):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RequestValidationError(
                    [
                        {
                            "type": "json_invalid",
                            "loc": ("body", exc.pos),
                            "msg": "JSON decode error",
                            "input": {},
                            "ctx": {"error": exc.msg},
                        }
                    ],
                    body=exc.doc,
                ) from exc
            except Exception as exc:  # nested past the parser's depth (RecursionError)
                raise HTTPException(400, "There was an error parsing the body") from exc
    if not raw:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        return ParsedBody(None, RequestValidationError([missing]))
    try:
        return ParsedBody(NotificationCreate.model_validate(value, from_attributes=True))
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        return ParsedBody(None, RequestValidationError(errors, body=value))


AcceptBody = Annotated[ParsedBody, Depends(parse_accept_body)]


async def _declared(body: NotificationCreate) -> None:
    """Never routed: the body as FastAPI declares it, for its schema's components."""


def document_body(app: FastAPI) -> None:
    """The schemas of the accept body (``NotificationCreate`` and what it refers to) in the
    app's OpenAPI components, as FastAPI makes them for a declared body: ``OPENAPI`` refers
    to them, and no route declares the body any more."""
    made = app.openapi

    def openapi() -> dict[str, Any]:
        schema = made()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "NotificationCreate" not in components:
            twin = APIRoute("/", _declared, methods=["POST"])
            declared = get_openapi(title="", version="", routes=[twin])["components"]["schemas"]
            for name, value in declared.items():
                if name not in {"HTTPValidationError", "ValidationError"}:
                    components.setdefault(name, value)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
