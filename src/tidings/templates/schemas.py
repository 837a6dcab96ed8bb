from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tidings.core.limits import JsonObject, Storable
from tidings.core.rendering import TEMPLATE_CODE_PATTERN

CODE_PATTERN = TEMPLATE_CODE_PATTERN
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
CODE_MAX_LENGTH = 100

Channel = Literal["email", "push"]
Code = Annotated[
    str, StringConstraints(min_length=1, max_length=CODE_MAX_LENGTH, pattern=CODE_PATTERN)
]
Language = Annotated[str, StringConstraints(pattern=LANGUAGE_PATTERN)]
# A category's key: what a template names and a user's preferences are keyed by.
CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
CategoryKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=CATEGORY_PATTERN)
]
# Template codes the service's own routes take (GET /api/v1/templates/categories/).
RESERVED_CODES = frozenset({"categories"})

# Lengths match the columns in models.py. A subject is one header line (RFC 5322: 998).
Subject = Annotated[str, StringConstraints(min_length=1, max_length=998), Storable]
Body = Annotated[str, StringConstraints(min_length=1, max_length=200_000), Storable]
Title = Annotated[str, StringConstraints(min_length=1, max_length=500), Storable]
# image_url and link are templates too ("{{ link }}"), so they are not checked as URLs here.
UrlTemplate = Annotated[str, StringConstraints(min_length=1, max_length=2048), Storable]


class EmailTemplateCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "welcome",
                    "channel": "email",
                    "language": "en",
                    "subject": "Welcome, {{ name }}!",
                    "body": '<p>Hello {{ name }}: <a href="{{ link }}">start</a></p>',
                    "text_body": "Hello {{ name }}, start here: {{ link }}",
                    "category": "account",
                }
            ]
        },
    )
    code: Code
    channel: Literal["email"]
    language: Language = "en"
    subject: Subject
    body: Body  # HTML, autoescaped when rendered
    text_body: Body | None = None
    # None: uncategorised (only the user's channel preference applies, as before categories).
    category: CategoryKey | None = None


class PushTemplateCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "welcome",
                    "channel": "push",
                    "language": "en",
                    "title": "Welcome, {{ name }}",
                    "body": "Tap to start",
                    "image_url": "https://example.com/hello.png",
                    "link": "{{ link }}",
                }
            ]
        },
    )
    code: Code
    channel: Literal["push"]
    language: Language = "en"
    title: Title
    body: Body
    image_url: UrlTemplate | None = None
    link: UrlTemplate | None = None
    category: CategoryKey | None = None


# The channel decides which fields are allowed; a body for one channel with another's fields
# is refused (extra="forbid") instead of silently dropping them.
TemplateCreate = Annotated[EmailTemplateCreate | PushTemplateCreate, Field(discriminator="channel")]


class TemplateOut(BaseModel):
    template_id: uuid.UUID
    code: str
    channel: Channel
    language: str
    version: int
    subject: str | None
    body: str
    text_body: str | None
    title: str | None
    image_url: str | None
    link: str | None
    category: str | None = None
    # The category's flag, carried so that the gateway decides with one look-up.
    critical: bool = False
    created_at: dt.datetime


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variables: JsonObject = Field(default_factory=dict)
    language: Language = "en"
    channel: Channel = "email"


class RenderOut(BaseModel):
    code: str
    channel: Channel
    language: str  # the language actually served, after any fallback
    version: int
    rendered: dict[str, str | None]


class CategoryCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"key": "security", "description": "Sign-ins and password resets", "critical": True}
            ]
        },
    )
    key: CategoryKey
    description: Annotated[str, StringConstraints(min_length=1, max_length=500), Storable]
    critical: bool = False


class CategoryUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"description": "Offers and news"}]}
    )
    description: (
        Annotated[str, StringConstraints(min_length=1, max_length=500), Storable] | None
    ) = None
    critical: bool | None = None


class CategoryOut(BaseModel):
    key: str
    description: str
    critical: bool
    created_at: dt.datetime
    updated_at: dt.datetime
