"""The events webhooks report, and the body each is sent as.

``{"type": …, "timestamp": …, "data": {…}}``, snake_case. ``data.sequence`` is the id of the
history row the event comes from: it increases along one notification's history (not by one),
so a receiver can order a notification's events whatever order they arrive in."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any, cast

from tidings.core import jsons

NOTIFICATION_EVENTS: tuple[str, ...] = (
    "notification.queued",
    "notification.delivered",
    "notification.failed",
    "notification.skipped",
    "notification.cancelled",
    "notification.scheduled",
    "notification.bounced",
    "notification.complained",
)
OTHER_EVENTS: tuple[str, ...] = ("device.removed", "user.unsubscribed", "endpoint.disabled")
EVENT_TYPES: tuple[str, ...] = NOTIFICATION_EVENTS + OTHER_EVENTS
# Subscribes to every event type, present and future.
ALL = "*"


def subscribes(events: list[str], event_type: str) -> bool:
    return ALL in events or event_type in events


def check_events(events: list[str]) -> list[str]:
    """The subscription, de-duplicated; ValueError naming what is not an event type."""
    unknown = [e for e in events if e != ALL and e not in EVENT_TYPES]
    if unknown:
        raise ValueError(
            f"unknown event type(s) {', '.join(unknown)}; one of {', '.join(EVENT_TYPES)} or *"
        )
    if not events:
        raise ValueError("subscribe to at least one event type (or *)")
    return list(dict.fromkeys(events))


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def event_key(row: Any) -> str:
    """What makes one event one: its history row; for ``device.removed``, the notification
    and the device (every report of the attempts that found it carries it); else its outbox
    row."""
    if row.event_id is not None:
        return f"h{row.event_id}"
    if row.event_type == "device.removed":
        found = f"{row.extra['notification_id']}/{row.extra['device_id']}"
        return "d" + hashlib.sha256(found.encode()).hexdigest()[:48]
    return f"o{row.id}"


def notification_of(row: Any) -> uuid.UUID | None:
    """The notification an outbox row's event is about: its own column, or for
    ``device.removed`` the one whose attempt found the dead token; else None."""
    if row.notification_id is not None:
        return cast(uuid.UUID, row.notification_id)
    found = (row.extra or {}).get("notification_id")
    try:
        return uuid.UUID(str(found)) if found else None
    except ValueError:
        return None


def body_of(row: Any) -> bytes:
    """The body of an event captured in the outbox (a webhooks.models.WebhookOutbox row or
    one with its columns)."""
    if row.notification_id is not None:
        data: dict[str, Any] = {
            "notification_id": str(row.notification_id),
            "request_id": row.request_id,
            "user_id": str(row.user_id) if row.user_id else None,
            "channel": row.channel,
            "status": row.status,
            "error": row.error,
            "detail": row.detail,
            "attempt": row.attempt,
            "round": row.round,
            "sequence": row.event_id if row.event_id is not None else row.id,
        }
    else:
        data = dict(row.extra or {})
    return jsons.dumps({"type": row.event_type, "timestamp": _iso(row.created_at), "data": data})
