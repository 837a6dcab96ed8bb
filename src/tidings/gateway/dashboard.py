"""The admin dashboard at /dashboard/: server-rendered pages, a little vanilla JS and one
vendored charting library (gateway/static/), no build step and nothing fetched from elsewhere
(it works offline).

Sign-in takes the admin key once and answers with a signed session cookie
(gateway.dashboard_sessions); every POST carries a CSRF token. The live parts
(overview, a notification's story, the template preview) poll small JSON endpoints that
answer with data and fragments rendered by the same templates as the pages. The pages live
in dashboard_overview, dashboard_story, dashboard_mail, dashboard_actions,
dashboard_categories, dashboard_users, dashboard_webhooks and dashboard_broadcasts (each a
router of dashboard_base's); this module
signs in and out, serves the static files, and holds the dead letters and templates pages.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from tidings.core.access import client_address
from tidings.core.auth import same_secret
from tidings.core.errors import TidingsError
from tidings.core.limits import Int64
from tidings.core.ratelimit import RateLimited
from tidings.gateway.dashboard_actions import router as actions_router
from tidings.gateway.dashboard_base import (
    HEADERS,
    JsonSession,
    Session,
    _page,
    _refused,
    _to_login,
    dashboard_router,
)
from tidings.gateway.dashboard_categories import router as categories_router
from tidings.gateway.dashboard_mail import router as mail_router
from tidings.gateway.dashboard_overview import router as overview_router
from tidings.gateway.dashboard_sessions import (
    COOKIE,
    SESSION_TTL_S,
    csrf_ok,
    form_of,
    new_session,
    session_of,
)
from tidings.gateway.dashboard_story import router as story_router
from tidings.gateway.dashboard_users import router as users_router
from tidings.gateway.dependencies import State
from tidings.gateway.pages import env, static
from tidings.gateway.schemas import DeadLetterFilter, ReplayRequest
from tidings.gateway.state import GatewayState

router = dashboard_router()
_SCRIPT = static("dashboard.js")


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


# The files under /dashboard/static/: ours, and the vendored chart library (static/VENDORED.md).
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
_VENDORED = ("uPlot.iife.min.js", "uPlot.min.css")


def _static_files() -> dict[str, tuple[bytes, str]]:
    files = {"dashboard.js": (_SCRIPT.encode(), _STATIC_TYPES[".js"])}
    folder = resources.files("tidings.gateway").joinpath("static")
    for name in _VENDORED:
        files[name] = (folder.joinpath(name).read_bytes(), _STATIC_TYPES[name[name.rindex(".") :]])
    return files


_STATIC = _static_files()


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    found = _STATIC.get(name)
    if found is None:
        return Response("not found", 404, media_type="text/plain")
    body, media_type = found
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})


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


@router.get("/api/preview")
async def preview_json(state: State, _: JsonSession, q: Preview) -> Response:
    p = await _preview(state, q)
    fragment = env.get_template("_preview.html").render(p=p)
    return JSONResponse({"data": p, "replace": {"preview": fragment}}, headers=HEADERS)


# Every router of the dashboard's own pages, each included by the gateway's app.
# (gateway.app includes dashboard_webhooks' and dashboard_broadcasts' routers after these.)
routers = (
    router,
    overview_router,
    story_router,
    mail_router,
    actions_router,
    categories_router,
    users_router,
)
