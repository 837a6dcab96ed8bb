from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute

from tidings.core.access import Caller, UnlimitedCaller, client_address, unlimited_principal
from tidings.core.auth import Principal
from tidings.core.envelope import Envelope, ok
from tidings.core.errors import NotFound
from tidings.core.openapi import errors
from tidings.core.status import Status
from tidings.core.web import LeanRoute
from tidings.gateway import accept_body, preference_centre
from tidings.gateway.accept_body import AcceptBody
from tidings.gateway.batch import accept_batch
from tidings.gateway.dependencies import (
    Accepting,
    Forwarder,
    Queries,
    RateLimits,
    Transitions,
    Users,
)
from tidings.gateway.proxy import passed_back
from tidings.gateway.schemas import (
    BatchCreate,
    BatchItemResult,
    NotificationAccepted,
    NotificationFilter,
    NotificationOut,
    NotificationSummary,
    StatusRecorded,
    StatusUpdate,
)
from tidings.gateway.state import GatewayState

router = APIRouter()
_ACCEPTED = Envelope[NotificationAccepted]
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def owner_of(caller: Principal) -> str:
    """Whom the notifications a caller creates belong to: the API key (its client
    application), or the admin."""
    return "admin" if caller.kind == "admin" else caller.subject


def owned_by(caller: Principal) -> str | None:
    """Whose notifications a caller may read and cancel: its own, or (None) everyone's for
    the admin, the service and a key with ``notifications:read_all``."""
    return None if caller.may("notifications:read_all") else owner_of(caller)


@router.post(
    "/api/v1/notifications/",
    status_code=202,
    response_model=Envelope[NotificationAccepted],
    tags=["notifications"],
    # 404: no such user or template; 409: the request_id was used with another body.
    responses=errors(404, 409),
    openapi_extra=accept_body.OPENAPI,  # the body is parsed by the route (AcceptBody)
)
async def send_notification(
    parsed: AcceptBody, caller: UnlimitedCaller, acceptance: Accepting, limits: RateLimits
) -> Response:
    # What a client sees first, as for every route: 400 (malformed JSON, AcceptBody), 401,
    # 429 of its credential, 422, 403; then 404, 409 and the recipient's 429. The caller's
    # token and the recipient's are taken in one round trip (docs/decisions.md).
    body = parsed.body
    if body is None or not caller.may("notifications:send"):
        await limits.caller(caller)
        if parsed.error is not None:
            raise parsed.error
        caller.require("notifications:send")
    assert body is not None
    reservation = await limits.reserve(caller, body.user_id)
    try:
        with limits.reserved(reservation):
            result, repeated = await acceptance.accept(body, owner_of(caller))
    finally:
        await limits.release(reservation)
    if repeated:
        return _accepted(result, "duplicate request_id: this is the notification it created")
    skipped = result.status == Status.SKIPPED
    return _accepted(result, "notification skipped" if skipped else "notification accepted")


async def _solve_send(request: Request) -> dict[str, Any]:
    """``send_notification``'s dependencies, solved in its order without FastAPI's machinery
    (core.web.lean): the body (its 400 first), then the caller (401), then the state's."""
    parsed = await accept_body.parse_accept_body(request)
    caller = await unlimited_principal(request)
    state: GatewayState = request.app.state.gateway
    return {
        "parsed": parsed,
        "caller": caller,
        "acceptance": state.acceptance,
        "limits": state.limits,
    }


def lean_routes() -> list[LeanRoute]:
    """The hot routes, served without FastAPI's dependency solving: put in front of the
    app's routes (gateway.app); the documented routes stay for the schema."""
    [send] = [r for r in router.routes if getattr(r, "endpoint", None) is send_notification]
    assert isinstance(send, APIRoute)
    declared = [d.call for d in send.dependant.dependencies]
    assert declared[:2] == [accept_body.parse_accept_body, unlimited_principal], declared
    return [LeanRoute(send, _solve_send)]


def _accepted(result: NotificationAccepted, message: str) -> Response:
    """The hot route's 202, the bytes FastAPI would make of ``ok(result, message)`` through
    the route's response_model (which stays, for the schema), by pydantic's serializer in one
    step: a Response returned is not validated and encoded again (docs/performance.md)."""
    body = _ACCEPTED(success=True, data=result, message=message).model_dump_json()
    return Response(body, status_code=202, media_type="application/json")


@router.post(
    "/api/v1/notifications/batch/",
    status_code=202,
    response_model=Envelope[list[BatchItemResult]],
    tags=["notifications"],
)
async def send_batch(body: BatchCreate, acceptance: Accepting, caller: Caller) -> dict[str, Any]:
    """Up to 1,000 notifications; a result per item, in order."""
    caller.require("notifications:send")
    results = await accept_batch(acceptance, body.notifications, owner_of(caller))
    counts = Counter(r.outcome for r in results)
    summary = ", ".join(f"{counts[k]} {k}" for k in ("accepted", "duplicate", "rejected"))
    return ok(results, summary)


@router.delete(
    "/api/v1/notifications/{notification_id}/",
    response_model=Envelope[NotificationOut],
    tags=["notifications"],
    responses=errors(409),  # already handed to the queue
)
async def cancel_notification(
    notification_id: uuid.UUID, transitions: Transitions, caller: Caller
) -> dict[str, Any]:
    """Cancel a notification not yet handed to the queue (a scheduled one, above all); one's
    own, unless the credential may read all (another client's is 404, as a missing one)."""
    caller.require("notifications:send")
    cancelled = await transitions.cancel(notification_id, owned_by(caller))
    return ok(cancelled, "notification cancelled")


@router.get(
    "/api/v1/notifications/",
    response_model=Envelope[list[NotificationSummary]],
    tags=["notifications"],
)
async def list_notifications(
    queries: Queries, caller: Caller, query: Annotated[NotificationFilter, Query()]
) -> dict[str, Any]:
    """Newest first. A user sees only their own notifications, an API key those it created
    (all of them with ``notifications:read_all``)."""
    owner = None
    if caller.kind == "user":
        query = query.model_copy(update={"user_id": caller.user_id})
    else:
        caller.require("notifications:read")
        owner = owned_by(caller)
    items, meta = await queries.search(query, owner)
    return ok(items, f"{meta.total} notification(s)", meta)


@router.get(
    "/api/v1/notifications/{notification_id}/",
    response_model=Envelope[NotificationOut],
    tags=["notifications"],
)
async def get_notification(
    notification_id: uuid.UUID, queries: Queries, caller: Caller
) -> dict[str, Any]:
    """A user reads their own; an API key those it created (any with
    ``notifications:read_all``). Someone else's is not even said to exist: 404, as a missing
    one, and the scope is checked first, so a 403 says nothing about the id either."""
    if caller.kind == "user":
        found = await queries.get(notification_id, None)
        if caller.user_id != found.user_id:
            raise NotFound(f"notification {notification_id} not found")
        return ok(found, "notification found")
    caller.require("notifications:read")
    return ok(await queries.get(notification_id, owned_by(caller)), "notification found")


@router.post(
    "/api/v1/{channel}/status/",
    response_model=Envelope[StatusRecorded],
    tags=["status"],
    responses=errors(409),  # the notification is of the other channel
)
async def report_status(
    channel: Literal["email", "push"],
    body: StatusUpdate,
    transitions: Transitions,
    caller: Caller,
) -> dict[str, Any]:
    caller.require_service()
    status = await transitions.record_status(
        body.notification_id,
        channel,
        body.status,
        at=body.timestamp,
        error=body.error,
        detail="reported through the status API",
    )
    return ok(
        StatusRecorded(notification_id=body.notification_id, status=status), "status recorded"
    )


@router.api_route("/api/v1/users/{path:path}", methods=_METHODS, include_in_schema=False)
async def users_proxy(
    request: Request, path: str, caller: Caller, proxy: Forwarder, users: Users
) -> Response:
    """Forwarded to the users service, with the caller; see its own schema. A change to a
    user drops the gateway's cached copy, so the next notification sees it."""
    answer = await proxy.forward(request, caller, "users")
    user_id = path.split("/", 1)[0]
    if request.method != "GET" and answer.is_success and user_id:
        with contextlib.suppress(ValueError):
            await users.forget(uuid.UUID(user_id))
    return passed_back(answer)


@router.api_route("/api/v1/templates/{path:path}", methods=_METHODS, include_in_schema=False)
async def templates_proxy(request: Request, caller: Caller, proxy: Forwarder) -> Response:
    """Forwarded to the templates service, with the caller; see its own schema."""
    return passed_back(await proxy.forward(request, caller, "templates"))


@router.api_route("/api/v1/auth/{path:path}", methods=["POST"], include_in_schema=False)
async def auth_proxy(request: Request, proxy: Forwarder, limits: RateLimits) -> Response:
    """Login and refresh, forwarded to the users service: no credential needed, but a
    rate limit per client address against password guessing."""
    await limits.login("login", client_address(request))
    return passed_back(await proxy.forward(request, None, "auth"))


# The preference centre (its own module): mounted with the gateway's routes.
router.include_router(preference_centre.router)
