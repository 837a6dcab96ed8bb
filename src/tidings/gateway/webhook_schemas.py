"""The outbound webhooks API's bodies and answers (gateway.webhook_endpoints)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tidings.core.limits import Storable

# webhooks.events.EVENT_TYPES and "*" (every type), written out for the schema's enum
# (tests/webhooks checks that the two agree).
EventName = Literal[
    "notification.queued",
    "notification.delivered",
    "notification.failed",
    "notification.skipped",
    "notification.cancelled",
    "notification.scheduled",
    "notification.bounced",
    "notification.complained",
    "device.removed",
    "user.unsubscribed",
    "endpoint.disabled",
    "*",
]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2000)]
Description = Annotated[str, StringConstraints(max_length=500), Storable]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://shop.example.com/hooks/tidings",
                    "events": ["notification.delivered", "notification.failed"],
                    "description": "order e-mails",
                }
            ]
        },
    )
    url: Url
    events: Annotated[list[EventName], Field(min_length=1, max_length=20)]
    description: Description = ""


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"events": ["*"]}, {"disabled": False}]},
    )
    url: Url | None = None
    events: Annotated[list[EventName], Field(min_length=1, max_length=20)] | None = None
    description: Description | None = None
    disabled: bool | None = None


class EndpointOut(BaseModel):
    endpoint_id: uuid.UUID
    owner: str
    url: str
    events: list[str]
    description: str
    disabled: bool
    disabled_reason: str | None
    failing_since: dt.datetime | None
    last_success_at: dt.datetime | None
    previous_secret_until: dt.datetime | None
    created_at: dt.datetime


class EndpointWithSecret(EndpointOut):
    """Shown once, at creation and at each rotation."""

    secret: str = Field(examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])


class AttemptOut(BaseModel):
    at: dt.datetime
    status_code: int | None
    duration_ms: float
    error: str | None
    response_excerpt: str | None


class MessageOut(BaseModel):
    webhook_id: str
    event_type: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: dt.datetime | None
    last_status: int | None
    last_error: str | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    payload: dict[str, object]
    attempt_log: list[AttemptOut] = []


class ReplayRequest(BaseModel):
    """One message by its ``webhook_id``, or every failed one since a time."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"webhook_id": "msg_2b1c9e0f4d6a4b7c8e9f0a1b2c3d4e5f"},
                {"since": "2026-12-01T00:00:00Z"},
            ]
        },
    )
    webhook_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    since: dt.datetime | None = None


class ReplayResult(BaseModel):
    replayed: int
