"""The webhooks' tables, in the gateway's schema (migration gateway 0009): endpoints, the
capture outbox the history trigger fills, one message per (event, endpoint), each attempt.

The worker reads and writes these tables only; the gateway's API writes endpoints and reads
the rest (docs/decisions.md, "Outbound webhooks")."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidings.core.db import BigId, UTCDateTime, utcnow


class WebhookBase(DeclarativeBase):
    """The webhooks' own metadata (tables in the gateway's schema)."""


class WebhookEndpoint(WebhookBase):
    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # The API key's id (its client application), or "admin": an admin endpoint gets every
    # client's events.
    owner: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    events: Mapped[list[str]] = mapped_column(JSON)
    # Fernet tokens (webhooks.secrets): a database leak alone does not reveal them.
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    previous_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The first failure since the last success: the auto-disable clock.
    failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookOutbox(WebhookBase):
    """An event captured in the transaction that wrote its history row (the trigger of
    migration 0009), or written by the worker itself (endpoint.disabled); the worker fans it
    out to the subscribed endpoints and deletes it, in one transaction."""

    __tablename__ = "webhook_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the history row
    event_type: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64))
    notification_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    channel: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    round: Mapped[int | None] = mapped_column(Integer, nullable=True)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookMessage(WebhookBase):
    """One event for one endpoint: its body (the same bytes on every attempt), its
    ``webhook-id``, and where its delivery stands. The table is the worker's queue: a
    pending message is due at ``next_attempt_at`` and claimed by moving that forward."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_key", name="ux_webhook_messages_event"),
        Index("ix_webhook_messages_due", "state", "next_attempt_at"),
        Index("ix_webhook_messages_endpoint", "endpoint_id", "created_at"),
        Index("ix_webhook_messages_notification", "notification_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_key: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    # The notification the event is about (None for user.unsubscribed, endpoint.disabled):
    # a notification's story finds its deliveries by it (migration gateway 0012).
    notification_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The successful attempt's own figures (it is no attempt row: migration gateway 0014).
    delivered_duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    delivered_excerpt: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookAttempt(WebhookBase):
    """An attempt that did not succeed (a success is written on its message: 0014)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("webhook_messages.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_excerpt: Mapped[str | None] = mapped_column(Text, nullable=True)
