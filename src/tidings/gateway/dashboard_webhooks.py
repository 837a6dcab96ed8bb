"""The dashboard's outbound webhooks pages: the endpoints, and one endpoint's messages with
their attempts and a replay button (docs/webhooks.md). A router of dashboard_base's,
included by gateway.app."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from tidings.core.errors import NotFound
from tidings.gateway.dashboard_base import HEADERS, Session, _page, _refused, dashboard_router
from tidings.gateway.dashboard_sessions import csrf_ok, form_of
from tidings.gateway.dependencies import State

router = dashboard_router()


@router.get("/webhooks/")
async def endpoints(state: State, token: Session) -> Response:
    rows = await state.webhook_endpoints.all(None)
    return _page("webhooks.html", token, nav="webhooks", endpoints=rows, endpoint=None)


@router.get("/webhooks/{endpoint_id}")
async def endpoint(
    state: State, token: Session, endpoint_id: uuid.UUID, replayed: str = ""
) -> Response:
    registry = state.webhook_endpoints
    try:
        found = await registry.get(endpoint_id, None)
    except NotFound:
        return _page("error.html", token, 404, message="No such webhook endpoint.")
    messages, total = await registry.messages(endpoint_id, None, None, 0, 50)
    return _page(
        "webhooks.html",
        token,
        nav="webhooks",
        endpoints=[],
        endpoint=found,
        messages=messages,
        total=total,
        flash=f"Message {replayed} replayed." if replayed else None,
    )


@router.post("/webhooks/{endpoint_id}/replay")
async def replay(
    request: Request, state: State, token: Session, endpoint_id: uuid.UUID
) -> Response:
    form = await form_of(request)
    if not csrf_ok(token, form):
        return _refused()
    webhook_id = str(form.get("webhook_id", ""))[:64]
    try:
        await state.webhook_endpoints.replay(endpoint_id, None, webhook_id, None)
    except NotFound:
        return _page("error.html", token, 404, message="No such webhook message.")
    query = urlencode({"replayed": webhook_id})
    return RedirectResponse(f"/dashboard/webhooks/{endpoint_id}?{query}", 303, headers=HEADERS)
