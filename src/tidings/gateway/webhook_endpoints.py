"""Outbound webhooks' endpoints API: a client application (API key) registers endpoints
for its own notifications' events; the admin's endpoints get every client's. Not to be
confused with gateway.webhooks, Mailgun's inbound event webhook. docs/webhooks.md."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from tidings.core.access import Caller
from tidings.core.auth import Principal
from tidings.core.envelope import Envelope, PaginationMeta, ok
from tidings.core.limits import Pagination
from tidings.core.openapi import errors
from tidings.gateway.webhook_schemas import (
    EndpointCreate,
    EndpointOut,
    EndpointUpdate,
    EndpointWithSecret,
    MessageOut,
    ReplayRequest,
    ReplayResult,
)
from tidings.webhooks.endpoints import Endpoints

router = APIRouter(prefix="/api/v1/webhooks/endpoints", tags=["webhooks"])
PATH = "/{endpoint_id}/"


async def _endpoints(request: Request) -> Endpoints:
    endpoints: Endpoints = request.app.state.gateway.webhook_endpoints
    return endpoints


Registry = Annotated[Endpoints, Depends(_endpoints)]


def _owner(caller: Principal) -> str:
    """Whose endpoints these are: the API key's (its client application) or the admin's."""
    caller.require("notifications:send")
    return "admin" if caller.is_admin else caller.subject


def _scope(caller: Principal) -> str | None:
    """Whose endpoints a caller may see: its own; the admin, everyone's (None)."""
    owner = _owner(caller)
    return None if owner == "admin" else owner


@router.post(
    "/", status_code=201, response_model=Envelope[EndpointWithSecret], responses=errors(422)
)
async def create_endpoint(
    body: EndpointCreate, registry: Registry, caller: Caller
) -> dict[str, Any]:
    """Register an endpoint. The signing secret is in this answer only: keep it."""
    made = await registry.create(_owner(caller), body.url, list(body.events), body.description)
    return ok(made, "endpoint registered: keep the secret, it is not shown again")


@router.get("/", response_model=Envelope[list[EndpointOut]])
async def list_endpoints(registry: Registry, caller: Caller) -> dict[str, Any]:
    found = await registry.all(_scope(caller))
    return ok(found, f"{len(found)} endpoint(s)")


@router.get(PATH, response_model=Envelope[EndpointOut], responses=errors(404))
async def get_endpoint(
    endpoint_id: uuid.UUID, registry: Registry, caller: Caller
) -> dict[str, Any]:
    return ok(await registry.get(endpoint_id, _scope(caller)), "endpoint found")


@router.patch(PATH, response_model=Envelope[EndpointOut], responses=errors(404, 422))
async def update_endpoint(
    endpoint_id: uuid.UUID, body: EndpointUpdate, registry: Registry, caller: Caller
) -> dict[str, Any]:
    """Change the URL, the events, the description; ``disabled: false`` enables it again
    (its pending messages go out)."""
    changes = body.model_dump(exclude_unset=True)
    return ok(await registry.update(endpoint_id, _scope(caller), changes), "endpoint updated")


@router.delete(PATH, response_model=Envelope[None], responses=errors(404))
async def delete_endpoint(
    endpoint_id: uuid.UUID, registry: Registry, caller: Caller
) -> dict[str, Any]:
    await registry.delete(endpoint_id, _scope(caller))
    return ok(None, "endpoint deleted, with its messages")


@router.post(
    PATH + "rotate-secret/", response_model=Envelope[EndpointWithSecret], responses=errors(404)
)
async def rotate_secret(
    endpoint_id: uuid.UUID, registry: Registry, caller: Caller
) -> dict[str, Any]:
    """A new secret (shown once); the old one signs beside it until ``previous_secret_until``."""
    return ok(await registry.rotate(endpoint_id, _scope(caller)), "secret rotated")


@router.get(PATH + "messages/", response_model=Envelope[list[MessageOut]], responses=errors(404))
async def list_messages(
    endpoint_id: uuid.UUID,
    registry: Registry,
    caller: Caller,
    page: Annotated[Pagination, Query()],
    state: Literal["pending", "delivered", "failed"] | None = None,
) -> dict[str, Any]:
    """The endpoint's messages, newest first, each with its attempts (time, status code,
    duration, an excerpt of the answer)."""
    rows, total = await registry.messages(
        endpoint_id, _scope(caller), state, page.offset, page.limit
    )
    meta = PaginationMeta.of(total=total, page=page.page, limit=page.limit)
    return ok(rows, f"{total} message(s)", meta)


@router.post(PATH + "replay/", response_model=Envelope[ReplayResult], responses=errors(404, 422))
async def replay(
    endpoint_id: uuid.UUID, body: ReplayRequest, registry: Registry, caller: Caller
) -> dict[str, Any]:
    """Send one message again (``webhook_id``, same id and body), or every failed message
    created since ``since``; each starts the retry schedule afresh."""
    count = await registry.replay(endpoint_id, _scope(caller), body.webhook_id, body.since)
    return ok({"replayed": count}, f"{count} message(s) replayed")
