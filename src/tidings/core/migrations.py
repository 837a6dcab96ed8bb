"""Alembic, run the same way for every service.

Each service has ``migrations/`` (env.py calls :func:`run_env`) and its own version table in
its own schema. ``migrate`` is synchronous: the CLI calls it before starting the event loop,
tests call it in a thread.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from tidings.core.db import engine_for


def alembic_config(package: str, url: str, schema: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files(package) / "migrations"))
    cfg.attributes["url"] = url
    cfg.attributes["schema"] = schema
    return cfg


def migrate(package: str, url: str, schema: str, revision: str = "head") -> int:
    """Create the service's schema if needed and upgrade it to ``revision``; returns how many
    revisions it applied. Alembic's own lines (one per revision) are quiet at INFO: the caller
    says what was done, once."""
    cfg = alembic_config(package, url, schema)
    applied: list[object] = []
    cfg.attributes["applied"] = applied
    command.upgrade(cfg, revision)
    return len(applied)


def run_env(metadata: MetaData, *, version_table: str = "alembic_version") -> None:
    """Body of every service's ``env.py``. ``version_table``: a second migration history in
    the same schema (the push worker's own tables beside core's delivery records) needs a
    version table of its own."""
    cfg = context.config
    url: str = cfg.attributes["url"]
    schema: str = cfg.attributes["schema"]

    def do_run(conn: Connection) -> None:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            conn.commit()
        context.configure(
            connection=conn,
            target_metadata=metadata,
            version_table=version_table,
            version_table_schema=schema if postgres else None,
            render_as_batch=not postgres,
            on_version_apply=lambda **kw: cfg.attributes.setdefault("applied", []).append(
                kw["step"]
            ),
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = engine_for(url, schema, pool_size=1)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(do_run)
                await conn.commit()
        finally:
            await engine.dispose()

    asyncio.run(main())
