from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)

from tidings.core.auth import Scope
from tidings.core.limits import (
    Int64,
    JsonObject,
    Pagination,
    Storable,
    Timestamp,
    check_json,
    check_text,
)
from tidings.core.rendering import TEMPLATE_CODE_PATTERN
from tidings.core.status import Status

RequestId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), Storable
]
_HTTP_URL = TypeAdapter(AnyHttpUrl)


def _http_url(value: str) -> str:
    """Checked as an http(s) URL, but kept exactly as the client wrote it."""
    _HTTP_URL.validate_python(value)
    return value


HttpLink = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_http_url), Storable]
TemplateCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=100, pattern=TEMPLATE_CODE_PATTERN),
]


class UserData(BaseModel):
    """The spec's ``variables``: ``name`` and ``link`` are required; templates may use more."""

    model_config = ConfigDict(extra="allow")
    name: Annotated[str, StringConstraints(max_length=500), Storable]
    link: HttpLink
    meta: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _bounded(self) -> UserData:
        # The whole object, extra fields included: the bounds the workers render within.
        check_json({"meta": self.meta, **(self.model_extra or {})})
        return self


class NotificationCreate(BaseModel):
    """POST /api/v1/notifications/ as the specification gives it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "notification_type": "email",
                    "user_id": "5034b021-17f3-4563-885f-b5455a3972f9",
                    "template_code": "welcome",
                    "variables": {"name": "Ada", "link": "https://example.com/start", "meta": None},
                    "request_id": "signup-42",
                    "priority": 5,
                    "metadata": {"campaign": "onboarding"},
                }
            ]
        },
    )
    notification_type: Literal["email", "push"]
    user_id: uuid.UUID
    template_code: TemplateCode
    variables: UserData
    request_id: RequestId
    # 0 (lowest) to 9 (highest); see docs/decisions.md.
    priority: Annotated[int, Field(ge=0, le=9)] = 5
    metadata: JsonObject | None = None
    # Hold the notification until then (at most a year ahead); a time in the past sends now.
    send_at: Timestamp | None = None

    @field_validator("send_at")
    @classmethod
    def _not_too_far(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value > dt.datetime.now(dt.UTC) + dt.timedelta(days=366):
            raise ValueError("send_at is more than a year ahead")
        return value


class NotificationAccepted(BaseModel):
    notification_id: uuid.UUID
    request_id: str
    status: Status
    notification_type: str
    created_at: dt.datetime


class HistoryEntry(BaseModel):
    status: Status
    detail: str | None
    error: str | None
    attempt: int | None
    timestamp: dt.datetime


class NotificationOut(BaseModel):
    notification_id: uuid.UUID
    request_id: str
    user_id: uuid.UUID
    notification_type: str
    template_code: str
    language: str
    priority: int
    status: Status
    error: str | None
    metadata: dict[str, Any] | None
    created_at: dt.datetime
    updated_at: dt.datetime
    history: list[HistoryEntry]


class StatusUpdate(BaseModel):
    """POST /api/v1/{email|push}/status/ as the specification gives it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "notification_id": "73ecdc46-c5e2-49a7-ba31-cac668666bc1",
                    "status": "delivered",
                    "timestamp": "2026-11-29T23:39:25Z",
                    "error": None,
                }
            ]
        },
    )
    notification_id: uuid.UUID
    # The specification's three.
    status: Literal[Status.DELIVERED, Status.PENDING, Status.FAILED]
    timestamp: Timestamp | None = None
    error: Annotated[str, StringConstraints(max_length=2000), Storable] | None = None


class StatusRecorded(BaseModel):
    notification_id: uuid.UUID
    status: Status


class DeadLetterFilter(Pagination):
    source_queue: Annotated[str, StringConstraints(max_length=255), Storable] | None = None
    notification_id: uuid.UUID | None = None
    reason_contains: Annotated[str, StringConstraints(max_length=1000), Storable] | None = None
    replayed: bool | None = None


class DeadLetterOut(BaseModel):
    dead_letter_id: int
    notification_id: uuid.UUID | None
    source_queue: str
    reason: str
    attempts: int
    errors: list[str]
    replay_count: int
    replayed_at: dt.datetime | None
    created_at: dt.datetime
    payload: str
    headers: dict[str, Any]


class ReplayRequest(BaseModel):
    """Which dead letters to replay: by id, by filter, or every one not replayed yet."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"reason_contains": "SMTP 421", "source_queue": "email.queue"}]
        },
    )
    dead_letter_ids: list[Int64] | None = Field(default=None, max_length=1000)
    source_queue: Annotated[str, StringConstraints(max_length=255), Storable] | None = None
    reason_contains: Annotated[str, StringConstraints(max_length=1000), Storable] | None = None
    # Say so to replay everything: an empty selection is refused, not taken as "all".
    all: bool = False
    limit: Annotated[int, Field(ge=1, le=10_000)] = 1000


class ReplayResult(BaseModel):
    dead_letter_id: int
    notification_id: uuid.UUID | None
    outcome: Literal["replayed", "skipped"]
    detail: str


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "shop backend",
                    "scopes": ["notifications:send"],
                    "rate_per_s": 50,
                    "burst": 100,
                }
            ]
        },
    )
    name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Storable
    ]
    scopes: Annotated[list[Scope], Field(min_length=1)]
    # Overrides of the default rate limit for this key (finite: JSON cannot answer infinity).
    rate_per_s: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] | None = None
    burst: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class ApiKeyOut(BaseModel):
    api_key_id: uuid.UUID
    name: str
    scopes: list[str]
    rate_per_s: float | None
    burst: int | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    """The key itself is in this answer only: it is stored hashed."""

    key: str


def _storable(value: Any) -> Any:
    return check_text(value) if isinstance(value, str) else value


class NotificationFilter(Pagination):
    """GET /api/v1/notifications/: every filter optional; newest first."""

    # Checked as text first: a NUL is refused as such, before the enum's refusal.
    status: Annotated[Status, BeforeValidator(_storable)] | None = None
    notification_type: Literal["email", "push"] | None = None
    user_id: uuid.UUID | None = None
    template_code: Annotated[str, StringConstraints(max_length=100), Storable] | None = None
    request_id: Annotated[str, StringConstraints(max_length=255), Storable] | None = None
    created_after: Timestamp | None = None
    created_before: Timestamp | None = None


class NotificationSummary(BaseModel):
    notification_id: uuid.UUID
    request_id: str
    user_id: uuid.UUID
    notification_type: str
    template_code: str
    priority: int
    status: Status
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class BatchCreate(BaseModel):
    """Up to 1,000 notifications; each is checked on its own."""

    model_config = ConfigDict(extra="forbid")
    notifications: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=1000)]


class BatchItemResult(BaseModel):
    index: int
    request_id: str | None
    outcome: Literal["accepted", "duplicate", "rejected"]
    notification_id: uuid.UUID | None = None
    status: Status | None = None
    error: str | None = None


class SuppressionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: EmailStr
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), Storable
    ]


class SuppressionOut(BaseModel):
    address: str
    reason: str
    source: str
    created_at: dt.datetime
