from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from tidings.core.access import Caller
from tidings.core.envelope import Envelope, ok
from tidings.core.openapi import errors
from tidings.users.dependencies import Users
from tidings.users.schemas import UserCreate, UserLookup, UserOut, UserUpdate

router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.post("/", status_code=201, response_model=Envelope[UserOut], responses=errors(409))
async def create_user(body: UserCreate, users: Users, caller: Caller) -> dict[str, Any]:
    caller.require("users:write")
    return ok(await users.create(body), "user created")


@router.get("/{user_id}/", response_model=Envelope[UserOut])
async def get_user(user_id: uuid.UUID, users: Users, caller: Caller) -> dict[str, Any]:
    caller.require_user_or(user_id, "users:write")
    return ok(await users.get(user_id), "user found")


@router.patch("/{user_id}/", response_model=Envelope[UserOut])
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, users: Users, caller: Caller
) -> dict[str, Any]:
    caller.require_user_or(user_id, "users:write")
    return ok(await users.update(user_id, body), "user updated")


@router.post("/lookup/", response_model=Envelope[list[UserOut]])
async def lookup_users(body: UserLookup, users: Users, caller: Caller) -> dict[str, Any]:
    """Up to 1,000 users by id (and up to 100 by address) in one call, those that exist
    (without devices); for the services (the gateway's broadcasts and dashboard), not for
    clients."""
    caller.require_service()
    found = await users.get_many(body.user_ids, body.emails)
    asked = len(set(body.user_ids)) + len(set(body.emails))
    return ok(found, f"{len(found)} of {asked} user(s) found")
