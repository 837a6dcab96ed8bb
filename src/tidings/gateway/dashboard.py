"""The admin dashboard at /dashboard/: server-rendered pages, a little vanilla JS, no build
step and nothing fetched from elsewhere (it works offline).

Sign-in takes the admin key once and answers with a signed session cookie (HttpOnly,
SameSite=Strict, 8 h; it names a digest of the admin key, so rotating the key ends every
session). Every POST carries a CSRF token derived from the session token. The live parts
(overview, a notification's timeline, the template preview) poll small JSON endpoints that
answer with fragments rendered by the same templates as the pages.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from collections import deque
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sqlalchemy import func, select

from tidings.core.access import Access, client_address
from tidings.core.auth import issue_token, read_token, same_secret
from tidings.core.errors import NotFound, TidingsError, Unauthorized
from tidings.core.limits import Int64
from tidings.core.ratelimit import RateLimited
from tidings.gateway.deadletters import DeadLetters
from tidings.gateway.listing import search
from tidings.gateway.models import Notification
from tidings.gateway.schemas import DeadLetterFilter, NotificationFilter, ReplayRequest
from tidings.gateway.service import NotificationService

COOKIE = "tidings_dashboard"
TOKEN_TYPE = "dashboard"
SESSION_TTL_S = 8 * 3600.0
LOGIN = "/dashboard/login"
STATUSES = ("pending", "queued", "sent", "delivered", "failed", "cancelled")
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

env = jinja2.Environment(
    loader=jinja2.PackageLoader("tidings.gateway", "dashboard_templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_SCRIPT = (
    resources.files("tidings.gateway").joinpath("dashboard_templates/dashboard.js").read_text()
)

router = APIRouter(prefix="/dashboard", include_in_schema=False)


# --- sessions ---------------------------------------------------------------------------


def _access(request: Request) -> Access:
    access: Access = request.app.state.access
    return access


def _key_digest(access: Access) -> str:
    return hashlib.sha256((access.admin_key or "").encode()).hexdigest()[:16]


def _session(request: Request) -> str | None:
    """The session token of a signed-in admin, or None."""
    token = request.cookies.get(COOKIE)
    access = _access(request)
    if not token or not access.admin_key:
        return None
    try:
        claims = read_token(access.secret_key, token, token_type=TOKEN_TYPE)
    except Unauthorized:
        return None
    if claims.get("sub") != "admin" or claims.get("k") != _key_digest(access):
        return None
    return token


def csrf_of(token: str) -> str:
    return hashlib.sha256(f"csrf:{token}".encode()).hexdigest()


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (the only kind our forms send)."""
    parsed = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _csrf_ok(token: str, form: dict[str, str]) -> bool:
    return hmac.compare_digest(form.get("csrf", ""), csrf_of(token))


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


@router.get("/login")
async def login_form(request: Request) -> Response:
    if _session(request):
        return RedirectResponse("/dashboard/", 303, headers=HEADERS)
    return _page("login.html", None, error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    access = _access(request)
    settings = request.app.state.settings
    try:  # per client address, as the API's login: the admin key is worth guessing at
        await request.app.state.limiter.check(
            f"dashboard-login:{client_address(request)}",
            settings.login_rate_per_s,
            settings.login_burst,
            "login attempts",
        )
    except RateLimited as exc:
        limited = _page("login.html", None, 429, error="Too many attempts; wait a minute.")
        limited.headers["Retry-After"] = exc.retry_after_header
        return limited
    key = (await _form(request)).get("admin_key", "")
    if not access.admin_key or not same_secret(key, access.admin_key):
        return _page("login.html", None, 401, error="That is not the admin key.")
    token = issue_token(
        access.secret_key,
        {"typ": TOKEN_TYPE, "sub": "admin", "k": _key_digest(access)},
        SESSION_TTL_S,
    )
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
async def logout(request: Request) -> Response:
    token = _session(request)
    if token is None:
        return _to_login()
    if not _csrf_ok(token, await _form(request)):
        return _refused()
    answer = _to_login()
    answer.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return answer


@router.get("/static/dashboard.js")
async def script() -> Response:
    return Response(_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


# --- overview ---------------------------------------------------------------------------


def _notifications(request: Request) -> NotificationService:
    service: NotificationService = request.app.state.notifications
    return service


def _samples(name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name == name
    ]


def _rates(request: Request) -> dict[str, float]:
    """Status changes per second over about the last minute, from this process's counters
    (sampled on each overview request)."""
    totals: dict[str, float] = {}
    for labels, value in _samples("tidings_notifications_total"):
        totals[labels.get("status", "?")] = totals.get(labels.get("status", "?"), 0.0) + value
    now = time.monotonic()
    history: deque[tuple[float, dict[str, float]]] | None = getattr(
        request.app.state, "dashboard_rate_samples", None
    )
    if history is None:
        history = deque(maxlen=120)
        request.app.state.dashboard_rate_samples = history
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


async def _overview(request: Request) -> dict[str, Any]:
    db = _notifications(request).db
    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(Notification.status, func.count()).group_by(Notification.status)
            )
        ).all()
    counts = {status: 0 for status in STATUSES}
    counts.update({str(status): int(n) for status, n in rows})
    queues = {
        labels.get("queue", "?"): int(value) for labels, value in _samples("tidings_queue_depth")
    }
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "queues": dict(sorted(queues.items())),
        "rates": _rates(request),
        "at": dt.datetime.now(dt.UTC).strftime("%H:%M:%S UTC"),
    }


@router.get("/")
async def overview(request: Request) -> Response:
    token = _session(request)
    if token is None:
        return _to_login()
    return _page("overview.html", token, nav="overview", o=await _overview(request))


@router.get("/api/overview")
async def overview_json(request: Request) -> Response:
    if _session(request) is None:
        return _unauthorized_json()
    data = await _overview(request)
    fragment = env.get_template("_overview.html").render(o=data)
    return JSONResponse({"data": data, "replace": {"overview": fragment}}, headers=HEADERS)


# --- notifications ----------------------------------------------------------------------


@router.get("/notifications/")
async def notifications(request: Request, request_id: str = "", user_id: str = "") -> Response:
    token = _session(request)
    if token is None:
        return _to_login()
    error = None
    f = NotificationFilter(limit=50)
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
            error = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
    items, meta = ([], None) if error else await search(_notifications(request).db, f)
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


async def _timeline(request: Request, notification_id: str) -> dict[str, Any] | None:
    try:
        found = await _notifications(request).get(uuid.UUID(notification_id))
    except (ValueError, NotFound):
        return None
    return found.model_dump(mode="json")


@router.get("/notifications/{notification_id}")
async def timeline(request: Request, notification_id: str) -> Response:
    token = _session(request)
    if token is None:
        return _to_login()
    n = await _timeline(request, notification_id)
    if n is None:
        return _page("error.html", token, 404, message=f"No notification {notification_id}.")
    return _page("timeline.html", token, nav="notifications", n=n)


@router.get("/api/notifications/{notification_id}")
async def timeline_json(request: Request, notification_id: str) -> Response:
    if _session(request) is None:
        return _unauthorized_json()
    n = await _timeline(request, notification_id)
    if n is None:
        return JSONResponse({"error": "not found"}, 404, headers=HEADERS)
    fragment = env.get_template("_timeline.html").render(n=n)
    return JSONResponse({"data": n, "replace": {"timeline": fragment}}, headers=HEADERS)


# --- dead letters -----------------------------------------------------------------------


def _dead_letters(request: Request) -> DeadLetters:
    letters: DeadLetters = request.app.state.dead_letters
    return letters


@router.get("/dead-letters/")
async def dead_letters(
    request: Request, replayed: int | None = None, outcome: str = "", pending: bool = False
) -> Response:
    token = _session(request)
    if token is None:
        return _to_login()
    f = DeadLetterFilter(limit=50, replayed=False if pending else None)
    rows, meta = await _dead_letters(request).search(f)
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
async def replay(request: Request, dead_letter_id: Int64) -> Response:
    token = _session(request)
    if token is None:
        return _to_login()
    if not _csrf_ok(token, await _form(request)):
        return _refused()
    results = await _dead_letters(request).replay(ReplayRequest(dead_letter_ids=[dead_letter_id]))
    outcome = results[0].outcome if results else "gone"
    query = urlencode({"replayed": dead_letter_id, "outcome": outcome})
    return RedirectResponse(f"/dashboard/dead-letters/?{query}", 303, headers=HEADERS)


# --- templates --------------------------------------------------------------------------


async def _preview(
    request: Request, code: str, channel: str, language: str, variables: str
) -> dict[str, Any]:
    """What the templates service renders, or a readable error."""
    if not code.strip():
        return {"error": None, "rendered": None}
    try:
        parsed = json.loads(variables or "{}")
    except json.JSONDecodeError as exc:
        return {"error": f"The variables are not valid JSON: {exc}", "rendered": None}
    if not isinstance(parsed, dict):
        return {"error": "The variables must be a JSON object.", "rendered": None}
    client = request.app.state.templates_client
    body = {"variables": parsed, "language": language or "en", "channel": channel or "email"}
    try:
        path = f"/api/v1/templates/{quote(code.strip(), safe='')}/render/"
        rendered = await client.post(path, body)
    except TidingsError as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "rendered": None}
    return {"error": None, "rendered": rendered}


async def _known_templates(request: Request) -> list[dict[str, Any]]:
    try:
        found = await request.app.state.templates_client.get(
            "/api/v1/templates/", params={"limit": "100"}
        )
    except TidingsError:
        return []
    return list(found or [])


@router.get("/templates/")
async def templates(
    request: Request,
    code: str = "",
    channel: str = "email",
    language: str = "en",
    variables: str = "{}",
) -> Response:
    token = _session(request)
    if token is None:
        return _to_login()
    return _page(
        "templates.html",
        token,
        nav="templates",
        known=await _known_templates(request),
        form={"code": code, "channel": channel, "language": language, "variables": variables},
        p=await _preview(request, code, channel, language, variables),
    )


@router.get("/api/preview")
async def preview_json(
    request: Request,
    code: str = "",
    channel: str = "email",
    language: str = "en",
    variables: str = "{}",
) -> Response:
    if _session(request) is None:
        return _unauthorized_json()
    p = await _preview(request, code, channel, language, variables)
    fragment = env.get_template("_preview.html").render(p=p)
    return JSONResponse({"data": p, "replace": {"preview": fragment}}, headers=HEADERS)
