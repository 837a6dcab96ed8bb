"""What a push sender gets (the rendered content and one device) and what they share: the
priority → urgency mapping, Retry-After, and the breaker rule.

A sender returns the provider's reply on success and otherwise raises a classified
``DeliveryError`` (or ``BreakerOpen`` while its provider's breaker is open). httpx's
exceptions stop at the sender."""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tidings.core.errors import TransientError

# Moved to core (shared with the webhooks worker); the senders import them from here.
from tidings.core.netguard import CallLimits as CallLimits
from tidings.core.netguard import bounded_post as bounded_post

Urgency = Literal["very-low", "low", "normal", "high"]


def urgency_for(priority: int) -> Urgency:
    """Tidings' priority (0-9) as RFC 8030 §5.3 Urgency: 0-1 very-low, 2-3 low, 4-6 normal,
    7-9 high. Devices on battery defer very-low and low pushes."""
    if priority <= 1:
        return "very-low"
    if priority <= 3:
        return "low"
    if priority <= 6:
        return "normal"
    return "high"


@dataclass(frozen=True)
class PushContent:
    """One rendered push notification, the same for every device of the user."""

    notification_id: str
    title: str
    body: str
    image: str | None
    link: str | None
    # String values only: FCM's data is map<string, string>.
    data: dict[str, str] = field(default_factory=dict)
    ttl_s: int = 86_400
    urgency: Urgency = "normal"

    def payload(self) -> dict[str, Any]:
        """The Web Push message the service worker receives (``event.data.json()``)."""
        return {
            "title": self.title,
            "body": self.body,
            "image": self.image,
            "link": self.link,
            "data": self.data,
        }


@dataclass(frozen=True)
class Device:
    """A live device as the users service lists it."""

    device_id: str
    kind: Literal["webpush", "fcm"]
    endpoint: str | None = None
    p256dh: str | None = None
    auth: str | None = None
    token: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Device:
        sub = data.get("subscription") or {}
        keys = sub.get("keys") or {}
        return cls(
            device_id=str(data["device_id"]),
            kind=data["kind"],
            endpoint=sub.get("endpoint"),
            p256dh=keys.get("p256dh"),
            auth=keys.get("auth"),
            token=data.get("token"),
        )

    @property
    def label(self) -> str:
        return f"{self.kind} device {self.device_id}"


class PushSender(Protocol):
    async def send(self, device: Device, content: PushContent) -> str: ...

    async def close(self) -> None: ...


def retry_after_s(value: str | None) -> float | None:
    """An HTTP Retry-After (RFC 9110 §10.2.3): seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def trips_breaker(exc: BaseException) -> bool:
    """Only a provider that cannot be reached opens its breaker, never a reply about one
    message or device (a 410, a 429)."""
    return isinstance(exc, TransientError) and exc.connection_level
