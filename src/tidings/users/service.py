"""What the users service does, apart from HTTP."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tidings.core.db import Database
from tidings.core.errors import Conflict, NotFound, Unauthorized
from tidings.users.categories import CriticalCategories
from tidings.users.devices_service import live_devices, sync_push_token
from tidings.users.models import User
from tidings.users.schemas import (
    DeviceOut,
    PreferencesPatch,
    UserCreate,
    UserOut,
    UserUpdate,
)

_WRONG = "wrong email or password"


@lru_cache(maxsize=1)
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_urlsafe(16))


def to_out(user: User, devices: list[DeviceOut] | None = None) -> UserOut:
    return UserOut(
        user_id=user.id,
        name=user.name,
        email=user.email,
        push_token=user.push_token,
        preferences=user.preferences,
        language=user.language,
        time_zone=user.time_zone,
        quiet_hours=user.quiet_hours,
        created_at=user.created_at,
        updated_at=user.updated_at,
        devices=devices or [],
    )


def merged(current: dict[str, Any], patch: PreferencesPatch) -> dict[str, Any]:
    """``current`` preferences with ``patch`` applied: channels replaced, categories merged
    per category and channel (null: back to the channel's own preference)."""
    out = {**current, **patch.model_dump(exclude_none=True, exclude={"categories"})}
    if patch.categories is not None:
        categories = {k: dict(v) for k, v in current.get("categories", {}).items()}
        for key, choice in patch.categories.items():
            channels = categories.setdefault(key, {})
            for channel in choice.model_fields_set:  # given ones: an absent one stays
                value = getattr(choice, channel)
                if value is None:
                    channels.pop(channel, None)
                else:
                    channels[channel] = value
        out["categories"] = {k: v for k, v in categories.items() if v}
    if not out.get("categories"):
        out.pop("categories", None)
    return out


class UserService:
    """Users in the users service's store: create (the password hashed with argon2, off the
    event loop), read with their live devices, and update (the specification's
    ``push_token`` kept as an FCM device, devices_service.sync_push_token), and check a
    login. Raises core's NotFound, Conflict for an email address taken, Unauthorized for a
    wrong login; built once per app (lifespan)."""

    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher,
        critical: CriticalCategories | None = None,
    ) -> None:
        self.db = db
        self.hasher = hasher
        self.critical = critical or CriticalCategories(None)

    async def create(self, body: UserCreate) -> UserOut:
        preferences = body.preferences.model_dump()
        await self.critical.check(preferences.get("categories", {}))
        # argon2 is deliberately slow (tens of ms of CPU): keep it off the event loop.
        password_hash = await asyncio.to_thread(self.hasher.hash, body.password)
        user = User(
            id=uuid.uuid4(),
            name=body.name,
            email=body.email,
            email_normalized=body.email.lower(),
            password_hash=password_hash,
            push_token=body.push_token,
            preferences=preferences,
            language=body.language,
            time_zone=body.time_zone,
            quiet_hours=None
            if body.quiet_hours is None
            else body.quiet_hours.model_dump(mode="json"),
        )
        async with self.db.sessions() as session:
            session.add(user)
            try:
                await session.flush()  # the user row first: the device refers to it
                await sync_push_token(session, user.id, body.push_token)
                await session.commit()
            except IntegrityError as exc:
                raise Conflict(f"a user with email {body.email} already exists") from exc
            return to_out(user, await live_devices(session, user.id))

    async def get(self, user_id: uuid.UUID) -> UserOut:
        async with self.db.sessions() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound(f"user {user_id} not found")
            return to_out(user, await live_devices(session, user_id))

    async def get_many(
        self, user_ids: list[uuid.UUID], emails: list[str] | None = None
    ) -> list[UserOut]:
        """Those of ``user_ids`` (and of ``emails``, any case) that exist, in one query,
        without their devices (the gateway's broadcasts need the contact data; the push
        worker reads devices itself)."""
        addresses = {e.lower() for e in emails or []}
        async with self.db.sessions() as session:
            users = await session.scalars(
                select(User).where(
                    User.id.in_(set(user_ids)) | User.email_normalized.in_(addresses)
                )
            )
            return [to_out(u) for u in users]

    async def update(self, user_id: uuid.UUID, body: UserUpdate) -> UserOut:
        if body.preferences is not None and body.preferences.categories:
            # Before any change: a refused update changes nothing.
            await self.critical.check(body.preferences.model_dump()["categories"])
        async with self.db.sessions() as session:
            user = await session.scalar(select(User).where(User.id == user_id).with_for_update())
            if user is None:
                raise NotFound(f"user {user_id} not found")
            changes = body.model_dump(exclude_unset=True)
            if "name" in changes and body.name is not None:
                user.name = body.name
            if "push_token" in changes:
                user.push_token = body.push_token
                # The spec's push_token registers (or replaces) the user's FCM device.
                await sync_push_token(session, user.id, body.push_token)
            if "language" in changes and body.language is not None:
                user.language = body.language
            if body.preferences is not None:
                user.preferences = merged(user.preferences, body.preferences)
            if "time_zone" in changes:
                user.time_zone = body.time_zone
            if "quiet_hours" in changes:
                hours = body.quiet_hours
                user.quiet_hours = None if hours is None else hours.model_dump(mode="json")
            await session.commit()
            return to_out(user, await live_devices(session, user_id))

    async def authenticate(self, email: str, password: str) -> uuid.UUID:
        """The id of the user with this email and password; Unauthorized otherwise."""
        async with self.db.sessions() as session:
            user = await session.scalar(select(User).where(User.email_normalized == email.lower()))
        # An unknown email costs the same argon2 check as a known one: the time of the answer
        # does not tell which emails exist. argon2 costs tens of ms of CPU: off the event loop.
        password_hash = user.password_hash if user is not None else _dummy_hash(self.hasher)
        try:
            await asyncio.to_thread(self.hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError) as exc:
            raise Unauthorized(_WRONG) from exc
        if user is None:
            raise Unauthorized(_WRONG)
        return user.id
