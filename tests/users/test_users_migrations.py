"""The users service's Alembic migrations build exactly the tables its models declare (0003:
time zone and quiet hours), on PostgreSQL and on the embedded SQLite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.credentials import SETTINGS
from tests.helpers import schema_diff
from tidings.users.models import UsersBase
from tidings.users.settings import UsersSettings


async def diff_after_migrate(settings: UsersSettings) -> list[Any]:
    return await schema_diff("tidings.users", settings.store_url, "users", UsersBase.metadata)


async def test_migrations_match_the_models_on_postgres(pg_database: str) -> None:
    assert await diff_after_migrate(UsersSettings(database_url=pg_database)) == []


async def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    assert await diff_after_migrate(UsersSettings(data_dir=tmp_path, **SETTINGS)) == []
