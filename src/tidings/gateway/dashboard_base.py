"""What every dashboard page shares: its headers (CSP), the session dependencies (a page
without a session goes to the login form, a polled JSON answers 401), the route class that
turns SignInAgain into that answer, and the page renderer."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from tidings.gateway.dashboard_sessions import csrf_of, session_of
from tidings.gateway.dependencies import State
from tidings.gateway.pages import env

LOGIN = "/dashboard/login"
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Our styles and scripts only (served from /dashboard/static/); previews and sent emails
    # are sandboxed srcdoc frames.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; frame-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


class SignInAgain(Exception):
    """No valid session: ``answer`` is what the route answers instead (to the login form,
    or a 401 for the polled JSON)."""

    def __init__(self, answer: Response) -> None:
        super().__init__("no dashboard session")
        self.answer = answer


class _DashboardRoute(APIRoute):
    """A dashboard route: SignInAgain, raised by the session dependencies, is its answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except SignInAgain as exc:
                return exc.answer

        return handler


def dashboard_router() -> APIRouter:
    """A router of dashboard pages: under /dashboard, outside the OpenAPI schema."""
    return APIRouter(prefix="/dashboard", include_in_schema=False, route_class=_DashboardRoute)


def _page(name: str, token: str | None, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("nav", "")
    html = env.get_template(name).render(csrf=csrf_of(token) if token else "", **context)
    return HTMLResponse(html, status, headers=HEADERS)


def _to_login() -> RedirectResponse:
    return RedirectResponse(LOGIN, 303, headers=HEADERS)


def _refused() -> HTMLResponse:
    return _page("error.html", None, 403, message="The form was stale or forged (CSRF check).")


def _unauthorized_json() -> JSONResponse:
    return JSONResponse({"error": "sign in again"}, 401, headers=HEADERS)


def _session(signed_out: Callable[[], Response]) -> Any:
    def session(request: Request, state: State) -> str:
        token = session_of(request, state.access)
        if token is None:
            raise SignInAgain(signed_out())
        return token

    return Depends(session)


# The session token of a page's request (none: to the login form) and of a JSON poll's
# (none: 401).
Session = Annotated[str, _session(_to_login)]
JsonSession = Annotated[str, _session(_unauthorized_json)]
