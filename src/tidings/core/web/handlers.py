"""The error handlers: every error leaves a service as the envelope with a readable
``error``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tidings.core.db import DRIVER_ERRORS, unavailable
from tidings.core.envelope import REASONS, failure
from tidings.core.errors import RetryAfter, TidingsError, describe_errors

log = logging.getLogger(__name__)


def _describe_validation(exc: RequestValidationError) -> tuple[int, str]:
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return 400, f"malformed JSON: {err.get('ctx', {}).get('error', 'cannot parse body')}"
    return 422, describe_errors(exc.errors())


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as the envelope with a readable ``error``."""

    @app.exception_handler(TidingsError)
    async def _tidings(_: Request, exc: TidingsError) -> JSONResponse:
        return JSONResponse(
            failure(exc.message, REASONS.get(exc.status_code, "error")),
            exc.status_code,
            headers={"Retry-After": exc.retry_after_header}
            if isinstance(exc, RetryAfter)
            else None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, error = _describe_validation(exc)
        return JSONResponse(failure(error, REASONS[status]), status)

    async def _database(_: Request, exc: Exception) -> JSONResponse:
        # The one place a database error becomes an answer. Unreachable, hanging, a pool
        # exhausted, a pooled connection the server dropped (a restart): nothing was
        # committed that a retry with the same request_id would repeat, so 503 and
        # Retry-After. Anything else is a bug: 500, logged.
        reason = unavailable(exc)
        if reason is not None:
            log.warning("database unavailable: %s", reason)
            return JSONResponse(
                failure("database unavailable; send the request again", REASONS[503]),
                503,
                headers={"Retry-After": "1"},
            )
        log.error("database error", exc_info=exc)
        return JSONResponse(failure("internal error", REASONS.get(500, "error")), 500)

    for error_class in DRIVER_ERRORS:
        app.add_exception_handler(error_class, _database)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            failure(str(exc.detail), REASONS.get(exc.status_code, "error")),
            exc.status_code,
            headers=exc.headers,
        )
