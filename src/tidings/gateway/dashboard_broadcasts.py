"""The dashboard's Broadcasts page: each broadcast's progress, with a progress bar (made and
delivered out of its recipients). A router of dashboard_base's, included by gateway.app."""

from __future__ import annotations

from fastapi import Response

from tidings.gateway.dashboard_base import Session, _page, dashboard_router
from tidings.gateway.dependencies import State

router = dashboard_router()


@router.get("/broadcasts/")
async def broadcasts(state: State, token: Session) -> Response:
    rows = await state.broadcasts.listing(None, limit=50)
    return _page("broadcasts.html", token, nav="broadcasts", rows=rows)
