"""Login: a user's email and password for an access token (and a refresh token)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from tidings.core.auth import read_token, user_tokens
from tidings.core.envelope import Envelope, ok
from tidings.core.openapi import errors
from tidings.users.dependencies import Settings, Users
from tidings.users.settings import UsersSettings

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr
    password: Annotated[str, Field(min_length=1, max_length=256)]


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user_id: uuid.UUID


def _tokens(settings: UsersSettings, user_id: uuid.UUID) -> dict[str, Any]:
    issued = user_tokens(
        settings.secret("secret_key"),
        user_id,
        settings.access_token_ttl_s,
        settings.refresh_token_ttl_s,
    )
    return {**issued, "user_id": user_id}


@router.post("/login/", response_model=Envelope[Tokens], responses=errors(401, 429))
async def login(body: LoginRequest, users: Users, settings: Settings) -> dict[str, Any]:
    user_id = await users.authenticate(body.email, body.password)
    return ok(_tokens(settings, user_id), "logged in")


@router.post("/refresh/", response_model=Envelope[Tokens], responses=errors(401, 429))
async def refresh(body: RefreshRequest, settings: Settings) -> dict[str, Any]:
    claims = read_token(settings.secret("secret_key"), body.refresh_token, token_type="refresh")
    return ok(_tokens(settings, uuid.UUID(claims["sub"])), "tokens refreshed")
