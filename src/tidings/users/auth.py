"""Login: a user's email and password for an access token (and a refresh token)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from functools import lru_cache
from typing import Annotated, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import select

from tidings.core.auth import read_token, user_tokens
from tidings.core.envelope import Envelope, ok
from tidings.core.errors import Unauthorized
from tidings.core.openapi import errors
from tidings.users.models import User

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
_WRONG = "wrong email or password"


@lru_cache(maxsize=1)
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_urlsafe(16))


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


def _tokens(request: Request, user_id: uuid.UUID) -> dict[str, Any]:
    settings = request.app.state.settings
    issued = user_tokens(
        settings.secret("secret_key"),
        user_id,
        settings.access_token_ttl_s,
        settings.refresh_token_ttl_s,
    )
    return {**issued, "user_id": user_id}


@router.post("/login/", response_model=Envelope[Tokens], responses=errors(401, 429))
async def login(body: LoginRequest, request: Request) -> dict[str, Any]:
    db = request.app.state.users.db
    hasher: PasswordHasher = request.app.state.users.hasher
    async with db.sessions() as session:
        user = await session.scalar(select(User).where(User.email_normalized == body.email.lower()))
    # An unknown email costs the same argon2 check as a known one: the time of the answer
    # does not tell which emails exist. argon2 costs tens of ms of CPU: off the event loop.
    password_hash = user.password_hash if user is not None else _dummy_hash(hasher)
    try:
        await asyncio.to_thread(hasher.verify, password_hash, body.password)
    except (VerificationError, InvalidHashError) as exc:
        raise Unauthorized(_WRONG) from exc
    if user is None:
        raise Unauthorized(_WRONG)
    return ok(_tokens(request, user.id), "logged in")


@router.post("/refresh/", response_model=Envelope[Tokens], responses=errors(401, 429))
async def refresh(body: RefreshRequest, request: Request) -> dict[str, Any]:
    secret = request.app.state.settings.secret("secret_key")
    claims = read_token(secret, body.refresh_token, token_type="refresh")
    return ok(_tokens(request, uuid.UUID(claims["sub"])), "tokens refreshed")
