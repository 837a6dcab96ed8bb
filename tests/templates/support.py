"""Request bodies and small helpers the templates tests share."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.credentials import SETTINGS
from tests.helpers import assert_envelope
from tidings.core.migrations import migrate
from tidings.templates.settings import TemplatesSettings

API = "/api/v1/templates"


async def migrated_settings(database_url: str) -> TemplatesSettings:
    settings = TemplatesSettings(database_url=database_url, **SETTINGS)
    await asyncio.to_thread(migrate, "tidings.templates", settings.store_url, "templates")
    return settings


def unique_code(prefix: str = "welcome") -> str:
    # The run's database is shared by every test: unique codes keep them apart.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def email_body(code: str, **overrides: object) -> dict:
    body: dict[str, object] = {
        "code": code,
        "channel": "email",
        "subject": "Hi {{ name }}",
        "body": "<p>Hello {{ name }}, see <a href='{{ link }}'>this</a></p>",
        "text_body": "Hello {{ name }}: {{ link }}",
    }
    body.update(overrides)
    return body


def push_body(code: str, **overrides: object) -> dict:
    body: dict[str, object] = {
        "code": code,
        "channel": "push",
        "title": "Hi {{ name }}",
        "body": "Hello {{ name }}",
        "link": "{{ link }}",
    }
    body.update(overrides)
    return body


async def post_ok(client: httpx.AsyncClient, body: dict) -> dict:
    response = await client.post(f"{API}/", json=body)
    assert response.status_code == 201, response.text
    assert_envelope(response.json(), success=True)
    data: dict = response.json()["data"]
    return data
