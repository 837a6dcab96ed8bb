"""The users service's Alembic migrations build exactly the tables its models declare (0003:
time zone and quiet hours), on PostgreSQL and on the embedded SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from tests.credentials import SETTINGS
from tidings.core.db import engine_for
from tidings.core.migrations import migrate
from tidings.users.models import UsersBase
from tidings.users.settings import UsersSettings


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"include_schemas": False, "compare_type": True}
    )
    return list(compare_metadata(context, UsersBase.metadata))


async def diff_after_migrate(settings: UsersSettings) -> list[Any]:
    await asyncio.to_thread(migrate, "tidings.users", settings.store_url, "users")
    engine = engine_for(settings.store_url, "users", pool_size=1)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_diff)
    finally:
        await engine.dispose()


async def test_migrations_match_the_models_on_postgres(pg_database: str) -> None:
    assert await diff_after_migrate(UsersSettings(database_url=pg_database)) == []


async def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    assert await diff_after_migrate(UsersSettings(data_dir=tmp_path, **SETTINGS)) == []
