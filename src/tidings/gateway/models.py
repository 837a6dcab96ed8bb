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
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidings.core.db import BigId, UTCDateTime, utcnow
from tidings.core.messages import NotificationMessage, Recipient
from tidings.core.status import Status
from tidings.core.topology import CHANNEL_ROUTES


class GatewayBase(DeclarativeBase):
    """The gateway's own metadata: notifications, their history, the outbox."""


class Notification(GatewayBase):
    __tablename__ = "notifications"
    # An index per selective list filter, ending in created_at: a filtered, newest-first page
    # is an index scan however many rows there are. Status and channel have none: a few values
    # each, their pages read the created_at index backwards with the filter; and an index on
    # status would make every status update a non-HOT one (migration 0008, which also leaves
    # room in each page for those updates; docs/performance.md).
    __table_args__ = (
        Index("ix_notifications_user_created", "user_id", "created_at"),
        Index("ix_notifications_template_created", "template_code", "created_at"),
        Index("ix_notifications_owner_created", "owner", "created_at"),
        Index("ix_notifications_request", "request_id"),  # the admin's look-up across owners
        # A request_id is the client's own: unique per owner, not across the deployment.
        Index("ux_notifications_owner_request", "owner", "request_id", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # Who created it: the API key's id (its client application), or "admin" (owner_of).
    owner: Mapped[str] = mapped_column(String(64), default="admin", server_default="admin")
    request_id: Mapped[str] = mapped_column(String(255))
    # sha256 of the canonical request body: the same request_id with another body is a 409.
    body_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    notification_type: Mapped[str] = mapped_column(String(16))
    template_code: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer)
    variables: Mapped[dict[str, Any]] = mapped_column(JSON)
    extra: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    correlation_id: Mapped[str] = mapped_column(String(128))
    # Where the status stands in the notification's life: (round, attempt) of the report that
    # set it. Reports can arrive out of order; an older one is kept in the history but does
    # not move the status. A replay starts the next round.
    round: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def next_round(self) -> None:
        """Pending again as the next round, its attempts from the start (a dead letter's
        replay, a resend from the dashboard)."""
        self.round += 1
        self.attempt = 0
        self.status = Status.PENDING
        self.error = None


class NotificationEvent(GatewayBase):
    """One entry of a notification's history."""

    __tablename__ = "notification_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxMessage(GatewayBase):
    """A message to publish, written in the same transaction as its notification."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    routing_key: Mapped[str] = mapped_column(String(32))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    correlation_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Not published before this: now for most, send_at for a scheduled notification.
    available_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class DeadLetter(GatewayBase):
    """A message from failed.queue, kept to be listed, inspected and replayed."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # sha256 of body and reason: a redelivery of the same dead letter is stored once.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    notification_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    source_queue: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[str]] = mapped_column(JSON)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    replay_count: Mapped[int] = mapped_column(Integer, default=0)
    replayed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Replay(GatewayBase):
    """Each replay of a dead letter, and what came of it."""

    __tablename__ = "replays"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dead_letter_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("dead_letters.id", ondelete="CASCADE"), index=True
    )
    notification_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))  # replayed | skipped
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(GatewayBase):
    """A client application's credential: only the key's hash is kept."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    rate_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    burst: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Suppression(GatewayBase):
    """An address never to send to again: a hard bounce, a complaint, or an admin's say."""

    __tablename__ = "suppressions"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)  # lower-cased
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))  # bounce | complaint | manual
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


def message_for(n: Notification, user: dict[str, Any]) -> NotificationMessage:
    """The work message of ``n``'s current round, rebuilt from the stored notification."""
    return NotificationMessage(
        notification_id=str(n.id),
        request_id=n.request_id,
        notification_type=n.notification_type,
        template_code=n.template_code,
        language=n.language,
        variables=n.variables,
        recipient=Recipient(
            user_id=str(n.user_id),
            name=user.get("name", ""),
            email=user.get("email"),
            push_token=user.get("push_token"),
            language=user.get("language", "en"),
        ),
        priority=n.priority,
        metadata=n.extra,
        round=n.round,
    )


def requeue_rows(
    n: Notification, message: NotificationMessage, detail: str, now: dt.datetime
) -> list[Any]:
    """What sends a stored notification on again through the outbox (a reconciler requeue,
    a dead letter's replay): its work message, and the history line that says why."""
    return [
        OutboxMessage(
            notification_id=n.id,
            routing_key=CHANNEL_ROUTES[n.notification_type],
            payload=message.dumps(),
            correlation_id=n.correlation_id,
            created_at=now,
            available_at=now,
        ),
        NotificationEvent(
            notification_id=n.id, status=Status.PENDING, detail=detail, created_at=now
        ),
    ]


class Topic(GatewayBase):
    """Something users subscribe to; a broadcast goes to its subscribers (docs/broadcasts.md).
    Its key is the client's own, unique per owner, as a request_id is."""

    __tablename__ = "topics"
    __table_args__ = (Index("ux_topics_owner_key", "owner", "key", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TopicSubscriber(GatewayBase):
    """One user subscribed to one topic. The primary key is also the fan-out's keyset: a
    topic's subscribers in user-id order."""

    __tablename__ = "topic_subscribers"
    __table_args__ = (Index("ix_topic_subscribers_user", "user_id", "topic_id"),)

    topic_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Broadcast(GatewayBase):
    """One notification to every subscriber of a topic, made in the background by whichever
    gateway holds its lease, page by page from its cursor (gateway.fanout)."""

    __tablename__ = "broadcasts"
    __table_args__ = (
        Index("ux_broadcasts_owner_request", "owner", "request_id", unique=True),
        Index("ix_broadcasts_status_lease", "status", "lease_until"),
        Index("ix_broadcasts_owner_created", "owner", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(255))
    body_hash: Mapped[str] = mapped_column(String(64))
    topic_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("topics.id"), index=True)
    notification_type: Mapped[str] = mapped_column(String(16))
    template_code: Mapped[str] = mapped_column(String(100))
    variables: Mapped[dict[str, Any]] = mapped_column(JSON)
    extra: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    priority: Mapped[int] = mapped_column(Integer)
    send_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # running | finished | cancelled
    # The last subscriber (user id) whose notification is made: the fan-out goes on after it.
    cursor: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    recipients: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DashboardSample(GatewayBase):
    """One gateway replica's figures for one minute (gateway.dashboard_samples): its accept
    and end-to-end latency histograms and what it read of the broker and its breakers. The
    overview adds up every replica's rows, so its figures are the system's."""

    __tablename__ = "dashboard_samples"

    replica: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Minutes since the epoch (UTC).
    minute: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
