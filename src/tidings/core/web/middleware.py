"""The one ASGI middleware every service runs: the correlation id with a log line per request
(2xx answers sampled), and the request body limit. One layer, not two: each layer of the hot
route wraps ``receive`` and ``send`` and costs a coroutine per message (docs/performance.md).

Given the app's exception handlers (``handlers``, as core.web.app's ServiceApp does) it is
also the whole of the app's middleware stack: it does what Starlette's ExceptionMiddleware
and FastAPI's AsyncExitStackMiddleware do around the router, and what
ServerErrorMiddleware's 500 did it did already, so those layers are not run.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

from fastapi.responses import JSONResponse
from starlette._exception_handler import _lookup_exception_handler
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

from tidings.core.discovery import INSTANCE_HEADER
from tidings.core.envelope import REASONS, failure
from tidings.core.logs import CORRELATION_HEADER, correlation_id, new_correlation_id
from tidings.core.metrics import HTTP_SECONDS, child

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_CORRELATION = CORRELATION_HEADER.lower().encode()
# Where Starlette's routes find the app's exception handlers, and where FastAPI's routes find
# the stack that closes a request's uploaded files (fastapi.routing asserts it is there).
_HANDLERS_KEY = "starlette.exception_handlers"
_FILES_KEY = "fastapi_middleware_astack"
Handlers = tuple[dict[Any, ExceptionHandler], dict[int, ExceptionHandler]]


class ServiceMiddleware:
    """Sets the correlation id for the request (from the header, or a new one) and echoes it
    in the response; refuses a body over ``max_bytes`` with 413 (by Content-Length, or by
    counting a chunked one); logs a line per request with its duration: every answer that is
    not a 2xx, and of the 2xx one in ``access_log_sample`` per route and method, the first
    included (1: all, 0: none).

    ``handlers``: the app's exception handlers, by class and by status (as Starlette's
    ExceptionMiddleware keeps them), when this layer is the app's only one (module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        instance_id: str = "",
        service: str = "",
        max_bytes: int | None = None,
        access_log_sample: int = 1,
        handlers: Handlers | None = None,
    ) -> None:
        self.app = app
        self.handlers = handlers
        self.service = service
        self.instance = (INSTANCE_HEADER.lower().encode(), instance_id.encode())
        self.max_bytes = max_bytes
        self.sample = access_log_sample
        self._seen: Counter[tuple[str, str]] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if self.handlers is not None and scope["type"] == "websocket":
                scope[_HANDLERS_KEY] = self.handlers
            await self.app(scope, receive, send)
            return
        files = None
        if self.handlers is not None:
            scope[_HANDLERS_KEY] = self.handlers
            files = scope[_FILES_KEY] = AsyncExitStack()
        headers = dict(scope["headers"])
        given = headers.get(_CORRELATION, b"").decode("latin-1")
        cid = given if _SAFE_ID.match(given) else new_correlation_id()
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 500
        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message.setdefault("headers", []).extend(
                    [(_CORRELATION, cid.encode()), self.instance]
                )
            await send(message)

        try:
            limited = await self._limited(scope, receive, headers, send_with_id)
            if limited is not None:
                await self.app(scope, limited, send_with_id)
        except Exception as exc:
            handler = None if started_response else self._handler_for(exc)
            if handler is not None:
                # The router's own errors (404, 405), as ExceptionMiddleware answered them;
                # a route's are answered by the route (Starlette's request_response).
                await self._handled(handler, exc, scope, receive, send_with_id)
                return
            # Here rather than in an exception handler, so the 500 and its log line still
            # carry the correlation id.
            log.exception("unhandled error")
            if started_response:
                raise
            await JSONResponse(failure("internal error", "internal error"), 500)(
                scope, receive, send_with_id
            )
        finally:
            if files is not None:
                await files.aclose()
            self._done(scope, status, time.perf_counter() - started)
            correlation_id.reset(token)

    def _handler_for(self, exc: Exception) -> ExceptionHandler | None:
        """Starlette's choice of handler (wrap_app_handling_exceptions)."""
        if self.handlers is None:
            return None
        by_class, by_status = self.handlers
        handler = by_status.get(exc.status_code) if isinstance(exc, HTTPException) else None
        return handler or _lookup_exception_handler(by_class, exc)

    @staticmethod
    async def _handled(
        handler: Any, exc: Exception, scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = Request(scope, receive)
        if is_async_callable(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        if response is not None:
            await response(scope, receive, send)
        exc.__traceback__ = None  # a reused exception would gather tracebacks

    async def _limited(
        self, scope: Scope, receive: Receive, headers: dict[bytes, bytes], send: Send
    ) -> Receive | None:
        """The ``receive`` the app gets, or None when the body was refused (413 sent)."""
        if self.max_bytes is None:
            return receive
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return None
            return receive  # the server reads no more than Content-Length says
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
                await self._refuse(scope, receive, send)
                return None

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        return replay

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.max_bytes is not None
        response = JSONResponse(
            failure(f"request body exceeds {self.max_bytes} bytes", REASONS[413]), 413
        )
        await response(scope, receive, send)

    def _done(self, scope: Scope, status: int, elapsed_s: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        child(HTTP_SECONDS, self.service, method, route, str(status)).observe(elapsed_s)
        if 200 <= status < 300:
            if self.sample <= 0:
                return
            seen = self._seen[method, route]
            self._seen[method, route] = seen + 1
            if seen % self.sample:
                return
        log.info(
            "%s %s %s",
            method,
            scope["path"],
            status,
            extra={"status": status, "duration_ms": round(elapsed_s * 1e3, 2)},
        )
