"""The relational store: one async engine per service, in the service's own schema.

PostgreSQL (asyncpg) in production; SQLite (aiosqlite) on the embedded default. Models
declare no schema: on PostgreSQL the connection's ``search_path`` is the service's schema,
so a service cannot read another's tables by accident.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import asyncpg
import orjson
from sqlalchemy import BigInteger, DateTime, Integer, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.types import TypeDecorator

from tidings.core import jsons
from tidings.core.breaker import CircuitBreaker
from tidings.core.settings import TidingsSettings, WorkerSettings

T = TypeVar("T")

# A 64-bit auto-incremented id; SQLite only auto-increments INTEGER PRIMARY KEY. (The
# migrations keep their own copy: a migration does not change with the models.)
BigId = BigInteger().with_variant(Integer(), "sqlite")


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
    """One service's database, on PostgreSQL (its own schema) or SQLite: the engine,
    session factories for ORM work and for one-statement work, and the dialect switch
    (``insert``). Opened by ``open_database``; every store of the service is handed it."""

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

    def insert(self, table: Any) -> Any:
        """An INSERT for this database's dialect: PostgreSQL's or SQLite's, the two that
        have ``on_conflict_do_nothing``/``on_conflict_do_update`` (the one place the switch
        is written)."""
        return (postgresql if self.is_postgres else sqlite).insert(table)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def _json_text(value: Any) -> str:
    return jsons.dumps(value).decode()


@dataclass(frozen=True)
class DbTimeouts:
    """How long a connect, a statement and a wait for a pooled connection may take.

    Without them a database host that drops packets holds a request for the driver's
    defaults (60 s to connect, no limit on a statement, 30 s for the pool).
    """

    connect_s: float
    statement_s: float
    pool_s: float
    # The breaker in front of the pool: after this many "unavailable" errors in a row every
    # checkout is refused at once (503) for ``breaker_reset_s``, then one probe goes.
    breaker_failures: int = 1
    breaker_reset_s: float = 1.0

    @classmethod
    def of(cls, settings: TidingsSettings) -> DbTimeouts:
        return cls(
            settings.db_connect_timeout_s,
            settings.db_statement_timeout_s,
            settings.db_pool_timeout_s,
            settings.db_breaker_failures,
            settings.db_breaker_reset_s,
        )

    @classmethod
    def for_worker(cls, settings: WorkerSettings) -> DbTimeouts:
        """A delivery worker's bounds: the same connect, pool and breaker bounds, but a
        statement may take up to a quarter of the delivery lease. A claim whose answer a
        timeout swallowed still holds its row until the lease ends, so on a merely slow
        database a tight statement bound would turn a short delay into a lease-long one."""
        bounds = cls.of(settings)
        statement_s = max(bounds.statement_s, settings.delivery_lease_s / 4)
        return replace(bounds, statement_s=statement_s)


# What the drivers raise when the database cannot be used: SQLAlchemy's own errors, and the
# asyncpg and socket errors it lets through unwrapped (a refused or timed-out connect, a
# statement's client-side timeout). The web layer catches these (core.web) and asks
# ``unavailable`` which of them mean "try again later".
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.SQLAlchemyError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # A multi-host URL none of whose hosts is (yet) what target_session_attrs asks for:
    # during a failover, the standby not promoted yet.
    asyncpg.exceptions.TargetServerAttributeNotMatched,
)
# SQLSTATE classes of a server that cannot serve now: 08 connection exception, 53
# insufficient resources (too many connections), 57P admin/crash shutdown, cannot connect now;
# 25006, a write on a server that is a standby now (a primary demoted by a switchover).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "58", "25006")


def unavailable(exc: BaseException) -> str | None:
    """Why ``exc`` means the database is unreachable, hanging or overloaded (the request or
    message may be tried again later), or None when it is about the statement itself (a
    constraint, a bug), which trying again cannot help."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):  # refused, reset, timed out (TimeoutError is one)
            return f"database unreachable: {seen!r}"
        if isinstance(seen, sa_exc.TimeoutError):
            return f"database pool exhausted: {seen}"
        if isinstance(seen, sa_exc.DBAPIError) and (
            seen.connection_invalidated
            or isinstance(seen, (sa_exc.OperationalError, sa_exc.InterfaceError))
        ):
            return f"database connection failed: {seen.orig!r}"
        if isinstance(seen, asyncpg.InterfaceError):
            return f"database connection failed: {seen!r}"
        if isinstance(seen, asyncpg.exceptions.TargetServerAttributeNotMatched):
            return f"no primary among the database hosts: {seen}"
        if str(getattr(seen, "sqlstate", "") or "").startswith(_UNAVAILABLE_SQLSTATES):
            return f"database unavailable: {seen!r}"
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return None


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection that broke under its statement (the server went
    away: a failover, a restart), as opposed to a timeout, whose statement may still be
    running, or a refusal. Work that is idempotent can be sent again on a fresh connection."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, (asyncpg.ConnectionDoesNotExistError, ConnectionResetError)):
            return True
        if str(getattr(seen, "sqlstate", "") or "").startswith(("57P01", "57P02")):
            return True  # admin or crash shutdown of the server under the session
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


async def again_if_lost(work: Callable[[], Awaitable[T]], *, attempts: int = 2) -> T:
    """Run ``work`` (a whole transaction, idempotent) and, when its connection was lost
    under it, again on a fresh one, up to ``attempts`` times in all. SQLAlchemy discards the
    pool's older connections after a disconnect, so the next try connects anew (to the
    promoted primary, with ``target_session_attrs=read-write``). While the database is away
    the breaker refuses the next try at once: 503, as before."""
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except DRIVER_ERRORS as exc:
            if attempt == attempts or not connection_lost(exc):
                raise
    raise AssertionError("unreachable")


def _drop_hung_connection(context: ExceptionContext) -> None:
    """A statement that timed out leaves its connection mid-protocol; SQLAlchemy would then
    try a graceful close that waits on the same silent peer. Abort it at once instead."""
    if isinstance(context.original_exception, TimeoutError) and context.connection is not None:
        with contextlib.suppress(Exception):
            driver = context.connection.connection.driver_connection
            if driver is not None:
                driver.terminate()


def _guarded_pool(breaker: CircuitBreaker) -> type[AsyncAdaptedQueuePool]:
    """The pool class of one engine, behind ``breaker``: while the database is away a
    checkout is refused at once (BreakerOpen, a DependencyUnavailable: 503) instead of each
    request meeting its own timeout, and a batch queued behind one that hung fails at once
    too. A class per engine because SQLAlchemy makes the pool (and remakes it on dispose)."""

    class GuardedPool(AsyncAdaptedQueuePool):
        """The queue pool, asking ``breaker`` before each new connection and telling it
        whether the connect found the database."""

        def connect(self) -> Any:
            breaker.before_call()
            try:
                return super().connect()
            except Exception as exc:  # a refused or timed-out connect, a full pool
                if unavailable(exc) is not None:
                    breaker.record_failure()
                else:
                    breaker.probing = False
                raise

    return GuardedPool


def _watch(engine: AsyncEngine, breaker: CircuitBreaker) -> None:
    """Statements tell the breaker whether the database answers."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _failed(context: ExceptionContext) -> None:
        if context.connection is None:
            return  # a failed connect, which the pool has counted already
        if unavailable(context.original_exception) is not None:
            breaker.record_failure()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _answered(*_: Any) -> None:
        if breaker.failures or breaker.opened_at is not None:  # cheap when all is well
            breaker.record_success()


def engine_for(
    url: str, schema: str, *, pool_size: int = 10, timeouts: DbTimeouts | None = None
) -> AsyncEngine:
    """The engine for ``url`` in ``schema``. ``timeouts`` (PostgreSQL only): the connect,
    statement and pool bounds and the breaker in front of the pool; None, the drivers'
    defaults and no breaker (migrations, which may run long)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {
            "server_settings": {
                "search_path": schema,
                "application_name": f"tidings-{schema}",
                # Each execution planned for the table as it is: a prepared statement's
                # kept (generic) plan, made while a fresh deployment's tables were near
                # empty, scanned the whole table at every batch until an ANALYZE
                # (docs/decisions.md, "Plans made for the table as it is").
                "plan_cache_mode": "force_custom_plan",
            }
        }
        pool: dict[str, Any] = {}
        breaker = None
        if timeouts is not None:
            # Client-side: a server-side statement_timeout cannot help when no packet
            # arrives. asyncpg's command_timeout covers every statement of the connection.
            connect_args |= {"timeout": timeouts.connect_s, "command_timeout": timeouts.statement_s}
            breaker = CircuitBreaker(
                f"database-{schema}",
                failure_threshold=timeouts.breaker_failures,
                reset_timeout_s=timeouts.breaker_reset_s,
            )
            pool = {"pool_timeout": timeouts.pool_s, "poolclass": _guarded_pool(breaker)}
        engine = create_async_engine(
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
            connect_args=connect_args,
            **pool,
        )
        event.listen(engine.sync_engine, "handle_error", _drop_hung_connection)
        if breaker is not None:
            _watch(engine, breaker)
        return engine
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # The timeouts are not applied: a local file neither refuses nor hangs the way a
        # network peer does. Its one wait is for a lock another writer of this process
        # holds, which a burst can hold longer than a network timeout, and the embedded
        # default would answer 503 to bursts it can absorb. A lock held past 30 s is an
        # OperationalError, which answers 503 (``unavailable``), not 500.
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


def open_database(url: str, schema: str, timeouts: DbTimeouts | None = None) -> Database:
    engine = engine_for(url, schema, timeouts=timeouts)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    return Database(
        engine,
        async_sessionmaker(engine, expire_on_commit=False),
        schema,
        async_sessionmaker(autocommit, expire_on_commit=False),
        autocommit,
    )
