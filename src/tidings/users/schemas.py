from __future__ import annotations

import datetime as dt
import uuid
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from tidings.core.limits import Storable

# Text kept in the store: stripped, not empty, storable (core.limits); its bound is given
# where it is used, as Annotated[StoredText, Field(max_length=…)].
StoredText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), Storable]
Name = Annotated[StoredText, Field(max_length=200)]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
# The specification's push_token, and an FCM device's token: the same thing.
PushToken = Annotated[StoredText, Field(max_length=4096)]


# A category's key, as the templates service has it (its schemas: CATEGORY_PATTERN).
CategoryKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]
MAX_CATEGORIES = 100


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _known_zone(name: str) -> str:
    # The set of names, not ZoneInfo(name): that also opens files by path-like names.
    if name not in _zones():
        raise ValueError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Berlin)")
    return name


TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_known_zone)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ChannelChoice(BaseModel):
    """A category's channels: True on, False off, absent (or null in a patch) the channel's
    own preference."""

    model_config = ConfigDict(extra="forbid")
    email: bool | None = None
    push: bool | None = None

    @model_serializer(mode="wrap")
    def _set_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


Categories = Annotated[dict[CategoryKey, ChannelChoice], Field(max_length=MAX_CATEGORIES)]


class Preferences(BaseModel):
    """The specification's ``{email, push}``, and choices per category over them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"email": True, "push": True, "categories": {"marketing": {"email": False}}}
            ]
        },
    )
    email: bool
    push: bool
    categories: Categories = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _spec_shape(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Without categories, exactly the specification's {email, push}.
        out: dict[str, Any] = handler(self)
        if not out.get("categories"):
            out.pop("categories", None)
        return out


class PreferencesPatch(BaseModel):
    """Given fields change, the others stay; ``categories`` merges per category and channel
    (a channel set to null goes back to the channel's own preference)."""

    model_config = ConfigDict(extra="forbid")
    email: bool | None = None
    push: bool | None = None
    categories: Categories | None = None


class QuietHours(BaseModel):
    """A nightly window in the user's time zone: ``start`` to ``end`` (past midnight when
    end < start), on the ``days`` it starts (all when absent)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"start": "22:00", "end": "07:00", "days": None}]},
    )
    start: dt.time
    end: dt.time
    days: Annotated[list[Weekday], Field(min_length=1, max_length=7)] | None = None

    @model_validator(mode="after")
    def _a_window(self) -> QuietHours:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("start and end are local times, without an offset")
        if self.start == self.end:
            raise ValueError("start and end are the same time")
        return self


class UserCreate(BaseModel):
    """POST /api/v1/users/ as the specification gives it, plus an optional language, time
    zone (none: UTC) and quiet hours."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Ada Lovelace",
                    "email": "ada@example.com",
                    "push_token": None,
                    "preferences": {"email": True, "push": False},
                    "password": "a long password",
                    "language": "en",
                    "time_zone": "Europe/Berlin",
                    "quiet_hours": {"start": "22:00", "end": "07:00"},
                }
            ]
        },
    )
    name: Name
    email: EmailStr
    push_token: PushToken | None = None
    preferences: Preferences
    password: Annotated[str, Field(min_length=8, max_length=256)]
    language: Language = "en"
    time_zone: TimeZone | None = None
    quiet_hours: QuietHours | None = None


class UserUpdate(BaseModel):
    """Given fields change; ``quiet_hours``: null removes them, ``time_zone``: null is UTC."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "preferences": {"categories": {"marketing": {"email": False}}},
                    "time_zone": "Asia/Tokyo",
                    "quiet_hours": {"start": "22:00", "end": "07:00", "days": ["mon", "tue"]},
                }
            ]
        },
    )
    name: Name | None = None
    push_token: PushToken | None = None
    preferences: PreferencesPatch | None = None
    language: Language | None = None
    time_zone: TimeZone | None = None
    quiet_hours: QuietHours | None = None


class UserOut(BaseModel):
    user_id: uuid.UUID
    name: str
    email: str
    push_token: str | None
    preferences: Preferences
    language: str
    time_zone: str | None = None  # None: UTC
    quiet_hours: QuietHours | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    # The user's live push devices (the push_token's device among them).
    devices: list[DeviceOut] = Field(default_factory=list)


class UserLookup(BaseModel):
    """Users by id, many at once (the gateway's broadcasts), or by address (the dashboard's
    search): those found, without devices."""

    model_config = ConfigDict(extra="forbid")
    user_ids: Annotated[list[uuid.UUID], Field(max_length=1000)] = []
    emails: Annotated[
        list[Annotated[StoredText, Field(max_length=320)]], Field(max_length=100)
    ] = []


class SubscriptionKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p256dh: Annotated[StoredText, Field(max_length=128)]
    auth: Annotated[StoredText, Field(max_length=64)]


class Subscription(BaseModel):
    """A browser's ``PushSubscription.toJSON()``. Its ``expirationTime`` (camelCase, and
    null in every browser today) is ignored rather than refused, so the browser's object can
    be posted as it is."""

    model_config = ConfigDict(extra="ignore")
    endpoint: Annotated[StoredText, Field(max_length=2048)]
    keys: SubscriptionKeys


class WebPushDeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["webpush"]
    subscription: Subscription


class FcmDeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["fcm"]
    token: PushToken


DeviceCreate = Annotated[WebPushDeviceCreate | FcmDeviceCreate, Field(discriminator="kind")]


class DeviceDead(BaseModel):
    """POST …/devices/{device_id}/dead/: the push worker reports a device the provider
    called gone (Web Push 404/410, FCM UNREGISTERED)."""

    model_config = ConfigDict(extra="forbid")
    reason: Annotated[StoredText, Field(max_length=1000)]


class DeviceOut(BaseModel):
    device_id: uuid.UUID
    user_id: uuid.UUID
    kind: Literal["webpush", "fcm"]
    # webpush: the subscription the push worker encrypts for; fcm: the token.
    subscription: Subscription | None = None
    token: str | None = None
    source: Literal["api", "push_token"]
    status: Literal["live", "dead"]
    dead_reason: str | None = None
    dead_at: dt.datetime | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


UserOut.model_rebuild()  # devices: DeviceOut is defined after UserOut
