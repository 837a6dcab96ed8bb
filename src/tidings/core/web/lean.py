"""A hot route served without FastAPI's per-request machinery.

FastAPI solves a route's dependencies per request (a walk of its dependant, a cache, two
exit stacks) and handles its answer; for the gateway's accept route that was about a tenth of
the gateway's CPU (py-spy; docs/performance.md). A :class:`LeanRoute` stands in front of the
FastAPI route it serves (``documented``), which stays where it was for the OpenAPI schema
and for every other method of the path: the route's own ``solve`` takes the request to the
endpoint's arguments, in the order FastAPI would solve them, and calls the endpoint. Its
errors reach the app's exception handlers as a Starlette route's do, and ``scope["route"]``
is the documented route, so the access log and the metrics name it as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

Solve = Callable[[Request], Awaitable[dict[str, Any]]]


class LeanRoute(BaseRoute):
    """``documented``'s one method on its path (no path parameters), served by calling its
    endpoint with what ``solve`` returns (the endpoint must return a Response: nothing
    validates or encodes what it returns). Any other method of the path matches nothing
    here, so FastAPI's routes answer it (405, or the path's other routes) as before."""

    def __init__(self, documented: APIRoute, solve: Solve) -> None:
        assert "{" not in documented.path, "a lean route has no path parameters"
        methods = documented.methods or set()
        assert len(methods) == 1, "a lean route serves one method"
        self.documented = documented
        self.path = self.path_format = documented.path
        [self.method] = methods
        self.endpoint = documented.endpoint
        self.solve = solve
        self._child_scope = {"route": documented, "endpoint": self.endpoint, "path_params": {}}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope["method"] == self.method
            and get_route_path(scope) == self.path
        ):
            return Match.FULL, dict(self._child_scope)
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)  # the documented route answers url_for

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)

        async def respond(scope: Scope, receive: Receive, send: Send) -> None:
            response: Response = await self.endpoint(**await self.solve(request))
            await response(scope, receive, send)

        await wrap_app_handling_exceptions(respond, request)(scope, receive, send)
