"""The Alembic migration builds exactly the tables the models declare, on both stores."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.credentials import SETTINGS
from tests.helpers import app_client, assert_envelope, schema_diff
from tidings.templates.app import create_app
from tidings.templates.models import TemplatesBase
from tidings.templates.settings import TemplatesSettings


async def diff_after_migrate(settings: TemplatesSettings) -> list[Any]:
    return await schema_diff(
        "tidings.templates", settings.store_url, "templates", TemplatesBase.metadata
    )


async def test_migration_matches_models_on_postgres(pg_database: str) -> None:
    assert await diff_after_migrate(TemplatesSettings(database_url=pg_database)) == []


async def test_embedded_sqlite_store(tmp_path: Path) -> None:
    # The embedded default (no URLs set) keeps the templates in their own SQLite file.
    settings = TemplatesSettings(data_dir=tmp_path, **SETTINGS)
    assert settings.store_url.endswith("/templates.db")
    assert await diff_after_migrate(settings) == []

    async with app_client(create_app(settings)) as client:
        body = {"code": "hello", "channel": "email", "subject": "Hi {{ name }}", "body": "x"}
        # SQLite has one writer; concurrent saves still get distinct, gapless versions.
        responses = await asyncio.gather(
            *(client.post("/api/v1/templates/", json=body) for _ in range(5))
        )
        assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
        assert sorted(r.json()["data"]["version"] for r in responses) == [1, 2, 3, 4, 5]
        got: httpx.Response = await client.get(
            "/api/v1/templates/hello/", params={"language": "fr"}
        )
        assert got.status_code == 200
        assert_envelope(got.json(), success=True)
        assert got.json()["data"]["version"] == 5 and got.json()["data"]["language"] == "en"
