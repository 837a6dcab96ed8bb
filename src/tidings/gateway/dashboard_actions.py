"""What an operator does from a notification's page, each a POST with the session's CSRF
token (as the dead letters' replay) and each written into the notification's history:
cancel a scheduled (or not yet published) one, resend a failed one (a new round: attempts
start again, the history says who asked), suppress or unsuppress its recipient's address."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy import select

from tidings.core.db import utcnow
from tidings.core.errors import Conflict, NotFound, TidingsError
from tidings.core.status import Status
from tidings.gateway.dashboard_base import HEADERS, Session, _refused, dashboard_router
from tidings.gateway.dashboard_sessions import csrf_ok, form_of
from tidings.gateway.dependencies import State
from tidings.gateway.models import Notification, NotificationEvent, message_for, requeue_rows
from tidings.gateway.state import GatewayState

router = dashboard_router()

RESENT = "resent from the dashboard"
_ADDRESS: TypeAdapter[str] = TypeAdapter(EmailStr)


def _back(notification_id: str, **outcome: str) -> RedirectResponse:
    query = urlencode(outcome)
    return RedirectResponse(
        f"/dashboard/notifications/{notification_id}?{query}", 303, headers=HEADERS
    )


async def _act(
    request: Request,
    token: str,
    notification_id: uuid.UUID,
    act: Callable[[], Awaitable[object]],
    verb: str,
    done: str,
) -> Response:
    """One of a notification page's actions: the CSRF check, then ``act`` (a TidingsError
    says why not), and back to the page with what came of it."""
    if not csrf_ok(token, await form_of(request)):
        return _refused()
    try:
        await act()
    except TidingsError as exc:
        return _back(str(notification_id), failed=f"Not {verb}: {exc}.")
    return _back(str(notification_id), done=done)


@router.post("/notifications/{notification_id}/cancel")
async def cancel(
    request: Request, state: State, token: Session, notification_id: uuid.UUID
) -> Response:
    act = functools.partial(state.transitions.cancel, notification_id, None)
    return await _act(request, token, notification_id, act, "cancelled", "Cancelled.")


async def resend(state: GatewayState, notification_id: uuid.UUID) -> None:
    """Send a failed notification again as a new round (its attempts start over); NotFound
    or Conflict says why not."""
    async with state.db.sessions() as session, session.begin():
        n = await session.scalar(
            select(Notification).where(Notification.id == notification_id).with_for_update()
        )
        if n is None:
            raise NotFound("no such notification")
        if n.status != Status.FAILED:
            raise Conflict(f"it is {n.status}, not failed")
        user = await state.users.get(n.user_id)
        n.next_round()
        message = message_for(n, user)
        session.add_all(requeue_rows(n, message, f"{RESENT} (round {n.round})", utcnow()))
    state.relay.wake()


@router.post("/notifications/{notification_id}/resend")
async def resend_route(
    request: Request, state: State, token: Session, notification_id: uuid.UUID
) -> Response:
    act = functools.partial(resend, state, notification_id)
    done = "Resent: a new attempt is on its way."
    return await _act(request, token, notification_id, act, "resent", done)


async def _note(state: GatewayState, notification_id: uuid.UUID, detail: str) -> None:
    """A history line that leaves the status as it is."""
    async with state.db.sessions() as session, session.begin():
        n = await session.get(Notification, notification_id)
        if n is not None:
            session.add(
                NotificationEvent(
                    notification_id=n.id, status=n.status, detail=detail, created_at=utcnow()
                )
            )


async def _suppression(request: Request, state: GatewayState, token: str, add: bool) -> Response:
    form = await form_of(request)
    if not csrf_ok(token, form):
        return _refused()
    try:
        back = uuid.UUID(form.get("back", ""))
        address = _ADDRESS.validate_python(form.get("address", "").strip())
    except (ValueError, ValidationError):
        return _refused()
    if add:
        await state.suppressions.add(address, "suppressed from the dashboard", "admin")
        detail = f"address {address} suppressed from the dashboard"
    else:
        try:
            await state.suppressions.remove(address)
        except TidingsError as exc:
            return _back(str(back), failed=f"Not unsuppressed: {exc}.")
        detail = f"address {address} unsuppressed from the dashboard"
    await _note(state, back, detail)
    return _back(str(back), done=detail[0].upper() + detail[1:] + ".")


@router.post("/suppressions/add")
async def suppress(request: Request, state: State, token: Session) -> Response:
    return await _suppression(request, state, token, add=True)


@router.post("/suppressions/remove")
async def unsuppress(request: Request, state: State, token: Session) -> Response:
    return await _suppression(request, state, token, add=False)
