"""The ASGI middleware every service runs: correlation ids with one log line per request,
and the request body limit."""

from __future__ import annotations

import logging
import re
import time

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.core.discovery import INSTANCE_HEADER
from tidings.core.envelope import REASONS, failure
from tidings.core.logs import CORRELATION_HEADER, correlation_id, new_correlation_id
from tidings.core.metrics import HTTP_SECONDS

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class CorrelationMiddleware:
    """Sets the correlation id for the request (from the header, or a new one), echoes it in
    the response, and logs one line per request with its duration."""

    def __init__(self, app: ASGIApp, instance_id: str = "", service: str = "") -> None:
        self.app = app
        self.service = service
        self.instance = (INSTANCE_HEADER.lower().encode(), instance_id.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = (
            dict(scope["headers"]).get(CORRELATION_HEADER.lower().encode(), b"").decode("latin-1")
        )
        cid = given if _SAFE_ID.match(given) else new_correlation_id()
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).extend(
                    [(CORRELATION_HEADER.lower().encode(), cid.encode()), self.instance]
                )
            await send(message)

        started_response = False

        async def send_tracked(message: Message) -> None:
            nonlocal started_response
            started_response = started_response or message["type"] == "http.response.start"
            await send_with_id(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            # Here rather than in an exception handler, so the 500 and its log line still
            # carry the correlation id.
            log.exception("unhandled error")
            if started_response:
                raise
            await JSONResponse(failure("internal error", "internal error"), 500)(
                scope, receive, send_with_id
            )
        finally:
            route = scope.get("route")
            HTTP_SECONDS.labels(
                self.service, scope["method"], getattr(route, "path", "unmatched"), str(status)
            ).observe(time.perf_counter() - started)
            log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1e3, 2),
                },
            )
            correlation_id.reset(token)


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, by Content-Length or by counting."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse(
                failure(f"request body exceeds {self.max_bytes} bytes", REASONS[413]), 413
            )
            await response(scope, receive, send)
            return
        # No Content-Length (chunked): read the body here, up to the limit, then replay it.
        # Refusing from inside the app's receive() would surface as a parse error instead.
        buffered: list[Message] = []
        seen = 0
        more = True
        while more:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
            if seen > self.max_bytes:
                response = JSONResponse(
                    failure(f"request body exceeds {self.max_bytes} bytes", REASONS[413]), 413
                )
                await response(scope, receive, send)
                return

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)
