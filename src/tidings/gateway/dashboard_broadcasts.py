"""The dashboard's Broadcasts page: each broadcast's progress, with a progress bar (made and
delivered out of its recipients). Its own router on the dashboard's route class and session;
the gateway mounts it beside the dashboard (gateway.app)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from tidings.gateway.dashboard import Session, _DashboardRoute, _page
from tidings.gateway.dependencies import State

router = APIRouter(prefix="/dashboard", include_in_schema=False, route_class=_DashboardRoute)


@router.get("/broadcasts/")
async def broadcasts(state: State, token: Session) -> Response:
    rows = await state.broadcasts.listing(None, limit=50)
    return _page("broadcasts.html", token, nav="broadcasts", rows=rows)
