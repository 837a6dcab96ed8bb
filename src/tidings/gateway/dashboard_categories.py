"""The dashboard's categories page: what the templates service has, and the admin's forms to
create, change and delete one. Each form is a POST with the session's CSRF token; the write
goes to the templates service's API (``/api/v1/templates/categories/``) with the admin key,
the one credential its writes take, so the service checks it exactly as for the API and the
CLI (a key in use, a malformed key, a duplicate: its refusal is shown and nothing changes)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from tidings.core.errors import DependencyUnavailable, TidingsError
from tidings.gateway.dashboard_base import HEADERS, Session, _page, _refused, dashboard_router
from tidings.gateway.dashboard_sessions import csrf_ok, form_of
from tidings.gateway.dependencies import State
from tidings.gateway.state import GatewayState

log = logging.getLogger(__name__)

router = dashboard_router()
PATH = "/api/v1/templates/categories/"


async def categories_context(state: GatewayState) -> dict[str, Any]:
    """The page's rows, or why there are none (the templates service unreachable)."""
    try:
        rows: list[dict[str, Any]] = await state.templates_client.get(PATH, params={"limit": "100"})
    except DependencyUnavailable as exc:
        log.warning("dashboard: categories unavailable: %s", exc)
        return {"categories": [], "error": f"The templates service is unavailable: {exc}"}
    return {"categories": rows, "error": None}


@router.get("/categories/")
async def categories(state: State, token: Session, done: str = "", failed: str = "") -> Response:
    context = await categories_context(state)
    return _page(
        "categories.html",
        token,
        nav="categories",
        flash=done[:300] or None,
        problem=failed[:300] or None,
        **context,
    )


def _back(**outcome: str) -> RedirectResponse:
    return RedirectResponse(f"/dashboard/categories/?{urlencode(outcome)}", 303, headers=HEADERS)


async def _write(
    request: Request, state: GatewayState, token: str, method: str, key: str | None
) -> Response:
    """One admin write from a form: the body the form asks for, sent as the admin."""
    form = await form_of(request)
    if not csrf_ok(token, form):
        return _refused()
    critical = bool(form.get("critical"))
    description = form.get("description", "").strip()
    if method == "POST":
        key = form.get("key", "").strip()
        body: dict[str, Any] | None = {"key": key, "description": description, "critical": critical}
    elif method == "PATCH":
        body = {"description": description or None, "critical": critical}
    else:
        body = None
    path = PATH if method == "POST" else f"{PATH}{quote(str(key), safe='')}/"
    try:
        await state.templates_client.request(method, path, json=body, token=state.access.admin_key)
    except TidingsError as exc:
        return _back(failed=f"Category {key!r} not {_DONE[method]}: {exc}")
    return _back(done=f"Category {key!r} {_DONE[method]}.")


_DONE = {"POST": "created", "PATCH": "updated", "DELETE": "deleted"}


@router.post("/categories/create")
async def create(request: Request, state: State, token: Session) -> Response:
    return await _write(request, state, token, "POST", None)


@router.post("/categories/{key}/update")
async def update(request: Request, state: State, token: Session, key: str) -> Response:
    return await _write(request, state, token, "PATCH", key)


@router.post("/categories/{key}/delete")
async def delete(request: Request, state: State, token: Session, key: str) -> Response:
    return await _write(request, state, token, "DELETE", key)
