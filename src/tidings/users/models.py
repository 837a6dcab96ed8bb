from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidings.core.db import UTCDateTime, utcnow


class UsersBase(DeclarativeBase):
    """The users service's own metadata: its tables and nobody else's."""


class User(UsersBase):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    # Lower-cased: addresses are unique regardless of case.
    email_normalized: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    push_token: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON)
    language: Mapped[str] = mapped_column(String(16), default="en")
    # An IANA name (None: UTC) and the quiet hours (schemas.QuietHours as JSON, None: none).
    time_zone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    quiet_hours: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Device(UsersBase):
    """A push device of a user: a Web Push subscription or an FCM registration token."""

    __tablename__ = "devices"
    # One row per (user, kind, address): registering the same one again finds this row.
    __table_args__ = (UniqueConstraint("user_id", "kind", "address_sha256"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # webpush | fcm
    # The endpoint (webpush) or the token (fcm); its SHA-256 carries the unique index,
    # since both may be longer than a btree entry can hold.
    address: Mapped[str] = mapped_column(Text)
    address_sha256: Mapped[str] = mapped_column(String(64))
    p256dh: Mapped[str | None] = mapped_column(String(128), nullable=True)
    auth: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # "push_token" for the device the user's push_token field made, "api" otherwise.
    source: Mapped[str] = mapped_column(String(16), default="api")
    status: Mapped[str] = mapped_column(String(8), default="live")  # live | dead
    dead_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    dead_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
