"""The relational store: one async engine per service, in the service's own schema.

PostgreSQL (asyncpg) in production; SQLite (aiosqlite) on the embedded default. Models
declare no schema: on PostgreSQL the connection's ``search_path`` is the service's schema,
so a service cannot read another's tables by accident.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import DateTime, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from tidings.core import jsons


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both PostgreSQL and SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    schema: str
    # Sessions whose every statement commits on its own (AUTOCOMMIT): for work that is one
    # statement, one round trip to PostgreSQL instead of three (BEGIN, the statement, COMMIT).
    statements: async_sessionmaker[AsyncSession]
    # The same, for Core statements built once (the hot paths): no ORM session in between.
    autocommit: AsyncEngine

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def _json_text(value: Any) -> str:
    return jsons.dumps(value).decode()


def engine_for(url: str, schema: str, *, pool_size: int = 10) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return create_async_engine(
            url,
            # JSON columns through orjson: several times faster than the json module.
            json_serializer=_json_text,
            json_deserializer=orjson.loads,
            pool_size=pool_size,
            max_overflow=pool_size,
            # No pre-ping: it cost three round trips per checkout (docs/performance.md). A
            # connection the server dropped (a restart) fails its statement once; SQLAlchemy
            # then discards every pooled connection made before it. The request answers 503
            # (core.web), a consumed message goes back to its queue.
            pool_recycle=1800,
            connect_args={
                "server_settings": {"search_path": schema, "application_name": f"tidings-{schema}"}
            },
        )
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")


def open_database(url: str, schema: str) -> Database:
    engine = engine_for(url, schema)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    return Database(
        engine,
        async_sessionmaker(engine, expire_on_commit=False),
        schema,
        async_sessionmaker(autocommit, expire_on_commit=False),
        autocommit,
    )
