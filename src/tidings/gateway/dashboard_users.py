"""The dashboard's page of a user's preferences: channels, every category per channel, time
zone and quiet hours, as the users service holds them (the notification page's "user" links
here). To change them, the operator opens that user's preference centre from this page (a
POST with the session's CSRF token, answered by a redirect to a freshly signed link): one form
and one way to save preferences, the user's own (preference_centre.py); the link is minted
for this operator's session and lives an hour."""

from __future__ import annotations

import uuid

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from tidings.core.auth import preferences_token
from tidings.core.errors import DependencyUnavailable, NotFound
from tidings.gateway.dashboard_base import HEADERS, Session, _page, _refused, dashboard_router
from tidings.gateway.dashboard_sessions import csrf_ok, form_of
from tidings.gateway.dependencies import State
from tidings.gateway.preference_centre import preferences_view

router = dashboard_router()
LINK_TTL_S = 3600.0


@router.get("/users/{user_id}/")
async def user_preferences(state: State, token: Session, user_id: uuid.UUID) -> Response:
    try:
        view = await preferences_view(state, user_id)
    except NotFound:
        return _page("error.html", token, 404, message=f"No user {user_id}.")
    except DependencyUnavailable as exc:
        return _page("error.html", token, 503, message=f"Preferences unavailable: {exc}")
    return _page("user.html", token, nav="notifications", **view)


@router.post("/users/{user_id}/preference-centre")
async def open_centre(
    request: Request, state: State, token: Session, user_id: uuid.UUID
) -> Response:
    if not csrf_ok(token, await form_of(request)):
        return _refused()
    link = preferences_token(state.access.secret_key, str(user_id), LINK_TTL_S)
    return RedirectResponse(f"/preferences/{link}/", 303, headers=HEADERS)
