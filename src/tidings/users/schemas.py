from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
PushToken = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]


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

    model_config = ConfigDict(extra="forbid")
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
