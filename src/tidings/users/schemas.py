from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from tidings.core.limits import Storable

# Text kept in the store: stripped, not empty, storable (core.limits); its bound is given
# where it is used, as Annotated[StoredText, Field(max_length=…)].
StoredText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), Storable]
Name = Annotated[StoredText, Field(max_length=200)]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
# The specification's push_token, and an FCM device's token: the same thing.
PushToken = Annotated[StoredText, Field(max_length=4096)]


class Preferences(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: bool
    push: bool


class PreferencesPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: bool | None = None
    push: bool | None = None


class UserCreate(BaseModel):
    """POST /api/v1/users/ as the specification gives it, plus an optional language."""

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


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    push_token: PushToken | None = None
    preferences: PreferencesPatch | None = None
    language: Language | None = None


class UserOut(BaseModel):
    user_id: uuid.UUID
    name: str
    email: str
    push_token: str | None
    preferences: Preferences
    language: str
    created_at: dt.datetime
    updated_at: dt.datetime
    # The user's live push devices (the push_token's device among them).
    devices: list[DeviceOut] = Field(default_factory=list)


class UserLookup(BaseModel):
    """Users by id, many at once (the gateway's broadcasts): those found, without devices."""

    model_config = ConfigDict(extra="forbid")
    user_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=1000)]


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
