"""The routes of topics and broadcasts (docs/broadcasts.md, docs/api.md). A client's topics and
broadcasts are its own (router.owner_of), as its notifications are."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from tidings.core.access import Caller
from tidings.core.envelope import Envelope, ok
from tidings.core.openapi import errors
from tidings.gateway.broadcasts import BroadcastAccepted, BroadcastCreate, BroadcastOut
from tidings.gateway.dependencies import BroadcastStore, FanoutTask, TopicStore
from tidings.gateway.router import owned_by, owner_of
from tidings.gateway.topics import (
    SubscriberPage,
    SubscribersChange,
    SubscribersChanged,
    TopicCreate,
    TopicOut,
)

router = APIRouter()


@router.post(
    "/api/v1/topics/",
    status_code=201,
    response_model=Envelope[TopicOut],
    tags=["topics"],
    responses=errors(409),  # the key is taken
)
async def create_topic(body: TopicCreate, topics: TopicStore, caller: Caller) -> dict[str, Any]:
    caller.require("notifications:send")
    return ok(await topics.create(body, owner_of(caller)), "topic created")


@router.get("/api/v1/topics/", response_model=Envelope[list[TopicOut]], tags=["topics"])
async def list_topics(
    topics: TopicStore, caller: Caller, user_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """The caller's topics by key (up to 1,000); with ``user_id``: those the user is
    subscribed to."""
    caller.require("notifications:read")
    found = await topics.listing(owner_of(caller), user_id)
    return ok(found, f"{len(found)} topic(s)")


@router.get("/api/v1/topics/{key}/", response_model=Envelope[TopicOut], tags=["topics"])
async def get_topic(key: str, topics: TopicStore, caller: Caller) -> dict[str, Any]:
    caller.require("notifications:read")
    return ok(await topics.describe(key, owner_of(caller)), "topic found")


@router.post(
    "/api/v1/topics/{key}/subscribers/",
    response_model=Envelope[SubscribersChanged],
    tags=["topics"],
)
async def add_subscribers(
    key: str, body: SubscribersChange, topics: TopicStore, caller: Caller
) -> dict[str, Any]:
    """Up to 10,000 user ids at once; those subscribed already are left as they are."""
    caller.require("notifications:send")
    added = await topics.subscribe(key, owner_of(caller), body.user_ids)
    changed = SubscribersChanged(topic_key=key, requested=len(body.user_ids), changed=added)
    return ok(changed, f"{added} subscriber(s) added")


@router.post(
    "/api/v1/topics/{key}/subscribers/remove/",
    response_model=Envelope[SubscribersChanged],
    tags=["topics"],
)
async def remove_subscribers(
    key: str, body: SubscribersChange, topics: TopicStore, caller: Caller
) -> dict[str, Any]:
    """Up to 10,000 user ids at once; those not subscribed are ignored."""
    caller.require("notifications:send")
    removed = await topics.unsubscribe(key, owner_of(caller), body.user_ids)
    changed = SubscribersChanged(topic_key=key, requested=len(body.user_ids), changed=removed)
    return ok(changed, f"{removed} subscriber(s) removed")


@router.get(
    "/api/v1/topics/{key}/subscribers/",
    response_model=Envelope[SubscriberPage],
    tags=["topics"],
)
async def list_subscribers(
    key: str,
    topics: TopicStore,
    caller: Caller,
    after: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """In user-id order, a page at a time: pass the answer's ``next_after`` as ``after``."""
    caller.require("notifications:read")
    page = await topics.subscribers(key, owner_of(caller), after, limit)
    return ok(page, f"{len(page.subscribers)} subscriber(s)")


@router.post(
    "/api/v1/broadcasts/",
    status_code=202,
    response_model=Envelope[BroadcastAccepted],
    tags=["broadcasts"],
    responses=errors(404, 409),  # no such topic; the request_id was used with another body
)
async def create_broadcast(
    body: BroadcastCreate, broadcasts: BroadcastStore, fanout: FanoutTask, caller: Caller
) -> dict[str, Any]:
    """One notification to every subscriber of the topic, made in the background: the answer
    comes at once, whatever the topic's size; follow it with GET …/{broadcast_id}/."""
    caller.require("notifications:send")
    accepted, repeated = await broadcasts.create(body, owner_of(caller))
    if repeated:
        return ok(accepted, "duplicate request_id: this is the broadcast it created")
    fanout.wake()
    return ok(accepted, "broadcast accepted")


@router.get("/api/v1/broadcasts/", response_model=Envelope[list[BroadcastOut]], tags=["broadcasts"])
async def list_broadcasts(broadcasts: BroadcastStore, caller: Caller) -> dict[str, Any]:
    """The newest 100, with their progress."""
    caller.require("notifications:read")
    found = await broadcasts.listing(owned_by(caller))
    return ok(found, f"{len(found)} broadcast(s)")


@router.get(
    "/api/v1/broadcasts/{broadcast_id}/",
    response_model=Envelope[BroadcastOut],
    tags=["broadcasts"],
)
async def get_broadcast(
    broadcast_id: uuid.UUID, broadcasts: BroadcastStore, caller: Caller
) -> dict[str, Any]:
    caller.require("notifications:read")
    return ok(await broadcasts.get(broadcast_id, owned_by(caller)), "broadcast found")


@router.delete(
    "/api/v1/broadcasts/{broadcast_id}/",
    response_model=Envelope[BroadcastOut],
    tags=["broadcasts"],
)
async def cancel_broadcast(
    broadcast_id: uuid.UUID, broadcasts: BroadcastStore, caller: Caller
) -> dict[str, Any]:
    """Stop the fan-out and withdraw every notification of the broadcast not yet handed to a
    provider; the answer's counts say how many went."""
    caller.require("notifications:send")
    return ok(await broadcasts.cancel(broadcast_id, owned_by(caller)), "broadcast cancelled")
