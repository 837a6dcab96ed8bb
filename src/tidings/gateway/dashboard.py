"""The admin dashboard at /dashboard/: server-rendered pages, a little vanilla JS, no build
step and nothing fetched from elsewhere (it works offline).

Sign-in takes the admin key once and answers with a signed session cookie
(gateway.dashboard_sessions); every POST carries a CSRF token. The live parts
(overview, a notification's timeline, the template preview) poll small JSON endpoints that
answer with fragments rendered by the same templates as the pages.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import REGISTRY
from pydantic import BaseModel, ValidationError

from tidings.core.access import client_address
from tidings.core.auth import same_secret
from tidings.core.errors import NotFound, TidingsError, describe_errors
from tidings.core.limits import Int64
from tidings.core.ratelimit import RateLimited
from tidings.core.status import Status
from tidings.gateway.dashboard_categories import categories_context
from tidings.gateway.dashboard_sessions import (
    COOKIE,
    SESSION_TTL_S,
    csrf_of,
    csrf_ok,
    form_of,
    new_session,
    session_of,
)
from tidings.gateway.dependencies import State
from tidings.gateway.pages import env, static
from tidings.gateway.schemas import DeadLetterFilter, NotificationFilter, ReplayRequest
from tidings.gateway.state import GatewayState, RateSamples

LOGIN = "/dashboard/login"
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Inline styles only; the one script is ours; previews are sandboxed srcdoc frames.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; frame-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}

_SCRIPT = static("dashboard.js")


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


router = APIRouter(prefix="/dashboard", include_in_schema=False, route_class=_DashboardRoute)


# --- pages and sign-in ------------------------------------------------------------------


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


@router.get("/login")
async def login_form(request: Request, state: State) -> Response:
    if session_of(request, state.access):
        return RedirectResponse("/dashboard/", 303, headers=HEADERS)
    return _page("login.html", None, error=None)


@router.post("/login")
async def login(request: Request, state: State) -> Response:
    access = state.access
    try:  # per client address, as the API's login: the admin key is worth guessing at
        await state.limits.login("dashboard-login", client_address(request))
    except RateLimited as exc:
        limited = _page("login.html", None, 429, error="Too many attempts; wait a minute.")
        limited.headers["Retry-After"] = exc.retry_after_header
        return limited
    key = (await form_of(request)).get("admin_key", "")
    if not access.admin_key or not same_secret(key, access.admin_key):
        return _page("login.html", None, 401, error="That is not the admin key.")
    token = new_session(access)
    answer = RedirectResponse("/dashboard/", 303, headers=HEADERS)
    answer.set_cookie(
        COOKIE,
        token,
        max_age=int(SESSION_TTL_S),
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


@router.post("/logout")
async def logout(request: Request, token: Session) -> Response:
    if not csrf_ok(token, await form_of(request)):
        return _refused()
    answer = _to_login()
    answer.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return answer


@router.get("/static/dashboard.js")
async def script() -> Response:
    return Response(_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


# --- overview ---------------------------------------------------------------------------


def _samples(name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name == name
    ]


def _rates(history: RateSamples) -> dict[str, float]:
    """Status changes per second over about the last minute, from this process's counters
    (sampled on each overview request)."""
    totals: dict[str, float] = {}
    for labels, value in _samples("tidings_notifications_total"):
        totals[labels.get("status", "?")] = totals.get(labels.get("status", "?"), 0.0) + value
    now = time.monotonic()
    history.append((now, totals))
    while len(history) > 2 and now - history[1][0] >= 60:
        history.popleft()
    then, before = history[0]
    span = now - then
    if span < 0.5:
        return {}
    return {
        status: round((value - before.get(status, 0.0)) / span, 2)
        for status, value in sorted(totals.items())
    }


async def _overview(state: GatewayState) -> dict[str, Any]:
    counts = dict.fromkeys(Status, 0) | await state.queries.counts()
    queues = {
        labels.get("queue", "?"): int(value) for labels, value in _samples("tidings_queue_depth")
    }
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "queues": dict(sorted(queues.items())),
        "rates": _rates(state.rate_samples),
        "at": dt.datetime.now(dt.UTC).strftime("%H:%M:%S UTC"),
    }


@router.get("/")
async def overview(state: State, token: Session) -> Response:
    return _page("overview.html", token, nav="overview", o=await _overview(state))


@router.get("/api/overview")
async def overview_json(state: State, _: JsonSession) -> Response:
    data = await _overview(state)
    fragment = env.get_template("_overview.html").render(o=data)
    return JSONResponse({"data": data, "replace": {"overview": fragment}}, headers=HEADERS)


# --- notifications ----------------------------------------------------------------------


@router.get("/notifications/")
async def notifications(
    state: State, token: Session, request_id: str = "", user_id: str = ""
) -> Response:
    error = None
    f = None
    if user_id.strip():
        try:
            uuid.UUID(user_id.strip())
        except ValueError:
            error = f"{user_id!r} is not a user id (a UUID)."
    if error is None:
        try:  # validated, so a search PostgreSQL cannot take is refused (core.limits)
            f = NotificationFilter(
                limit=50,
                request_id=request_id.strip() or None,
                user_id=user_id.strip() or None,
            )
        except ValidationError as exc:
            error = describe_errors(exc.errors())
    items, meta = ([], None) if f is None else await state.queries.search(f, None)
    return _page(
        "notifications.html",
        token,
        nav="notifications",
        items=items,
        total=meta.total if meta else 0,
        request_id=request_id,
        user_id=user_id,
        error=error,
    )


async def _timeline(state: GatewayState, notification_id: str) -> dict[str, Any] | None:
    try:
        found = await state.queries.get(uuid.UUID(notification_id), None)
    except (ValueError, NotFound):
        return None
    return found.model_dump(mode="json")


@router.get("/notifications/{notification_id}")
async def timeline(state: State, token: Session, notification_id: str) -> Response:
    n = await _timeline(state, notification_id)
    if n is None:
        return _page("error.html", token, 404, message=f"No notification {notification_id}.")
    return _page("timeline.html", token, nav="notifications", n=n)


@router.get("/api/notifications/{notification_id}")
async def timeline_json(state: State, _: JsonSession, notification_id: str) -> Response:
    n = await _timeline(state, notification_id)
    if n is None:
        return JSONResponse({"error": "not found"}, 404, headers=HEADERS)
    fragment = env.get_template("_timeline.html").render(n=n)
    return JSONResponse({"data": n, "replace": {"timeline": fragment}}, headers=HEADERS)


# --- dead letters -----------------------------------------------------------------------


@router.get("/dead-letters/")
async def dead_letters(
    state: State,
    token: Session,
    replayed: int | None = None,
    outcome: str = "",
    pending: bool = False,
) -> Response:
    f = DeadLetterFilter(limit=50, replayed=False if pending else None)
    rows, meta = await state.dead_letters.search(f)
    flash = None
    if replayed is not None and outcome in ("replayed", "skipped", "gone"):
        flash = f"Dead letter {replayed}: {outcome}."
    return _page(
        "dead_letters.html",
        token,
        nav="dead-letters",
        rows=rows,
        total=meta.total,
        flash=flash,
        pending=pending,
    )


@router.post("/dead-letters/{dead_letter_id}/replay")
async def replay(request: Request, state: State, token: Session, dead_letter_id: Int64) -> Response:
    if not csrf_ok(token, await form_of(request)):
        return _refused()
    chosen = ReplayRequest(dead_letter_ids=[dead_letter_id])
    results = await state.dead_letters.replay(chosen)
    outcome = results[0].outcome if results else "gone"
    query = urlencode({"replayed": dead_letter_id, "outcome": outcome})
    return RedirectResponse(f"/dashboard/dead-letters/?{query}", 303, headers=HEADERS)


# --- templates --------------------------------------------------------------------------


class PreviewQuery(BaseModel):
    """The template preview's form: a template code, and what to render it with."""

    code: str = ""
    channel: str = "email"
    language: str = "en"
    variables: str = "{}"


Preview = Annotated[PreviewQuery, Query()]


async def _preview(state: GatewayState, q: PreviewQuery) -> dict[str, Any]:
    """What the templates service renders, or a readable error."""
    if not q.code.strip():
        return {"error": None, "rendered": None}
    try:
        parsed = json.loads(q.variables or "{}")
    except json.JSONDecodeError as exc:
        return {"error": f"The variables are not valid JSON: {exc}", "rendered": None}
    if not isinstance(parsed, dict):
        return {"error": "The variables must be a JSON object.", "rendered": None}
    client = state.templates_client
    body = {"variables": parsed, "language": q.language or "en", "channel": q.channel or "email"}
    try:
        path = f"/api/v1/templates/{quote(q.code.strip(), safe='')}/render/"
        rendered = await client.post(path, body)
    except TidingsError as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "rendered": None}
    return {"error": None, "rendered": rendered}


async def _known_templates(state: GatewayState) -> list[dict[str, Any]]:
    try:
        found = await state.templates_client.get("/api/v1/templates/", params={"limit": "100"})
    except TidingsError:
        return []
    return list(found or [])


@router.get("/templates/")
async def templates(state: State, token: Session, q: Preview) -> Response:
    return _page(
        "templates.html",
        token,
        nav="templates",
        known=await _known_templates(state),
        form=q.model_dump(),
        p=await _preview(state, q),
    )


@router.get("/categories/")
async def categories(state: State, token: Session) -> Response:
    context = await categories_context(state)
    return _page("categories.html", token, nav="categories", **context)


@router.get("/api/preview")
async def preview_json(state: State, _: JsonSession, q: Preview) -> Response:
    p = await _preview(state, q)
    fragment = env.get_template("_preview.html").render(p=p)
    return JSONResponse({"data": p, "replace": {"preview": fragment}}, headers=HEADERS)
