"""Small helpers the tests share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from fastapi import FastAPI


@asynccontextmanager
async def app_client(
    app: FastAPI, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and give a client that talks to it in process, with the admin
    key unless other ``headers`` are given."""
    from tests.credentials import ADMIN

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://test",
            headers=ADMIN if headers is None else headers,
        ) as client:
            yield client


@contextmanager
def logged(logger: str, text: str) -> Iterator[asyncio.Event]:
    """An event set once ``logger`` (or a logger below it) logs a line containing ``text``:
    for what an in-process service only tells in its log (a publish that timed out)."""
    seen = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                seen.set()

    watch = Watch()
    target = logging.getLogger(logger)
    target.addHandler(watch)
    try:
        yield seen
    finally:
        target.removeHandler(watch)


def assert_envelope(body: dict, *, success: bool) -> None:
    """Every answer is the envelope, with exactly its five keys."""
    assert set(body) == {"success", "data", "error", "message", "meta"}, body
    assert body["success"] is success, body
    assert isinstance(body["message"], str)
    if success:
        assert body["error"] is None
    else:
        assert isinstance(body["error"], str) and body["error"], body
        assert body["data"] is None


async def wait_for_condition(check, *, timeout_s: float, interval_s: float = 0.05, what: str = ""):
    """Poll ``check`` (an async callable) until it returns something truthy; return that.

    Only for state that lives in another process (a service's HTTP answer, a file the
    capture server writes), where there is no in-process event to wait on.
    """
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            result = await check()
            if result:
                return result
        except Exception as exc:  # the other process may not be up yet
            last_error = exc
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(
                f"timed out after {timeout_s}s waiting for {what or check}: {last_error!r}"
            )
        await asyncio.sleep(interval_s)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def schema_diff(package: str, store_url: str, schema: str, metadata: Any) -> list[Any]:
    """What differs between ``metadata`` (a service's models) and the schema its Alembic
    migrations build, after migrating ``store_url``; [] when they agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from tidings.core.db import engine_for
    from tidings.core.migrations import migrate

    def diff(conn: Any) -> list[Any]:
        # engine_for sets the search_path to the service's schema, so the default schema is
        # the service's and include_schemas=False compares exactly that schema.
        context = MigrationContext.configure(
            conn, opts={"include_schemas": False, "compare_type": True}
        )
        return list(compare_metadata(context, metadata))

    await asyncio.to_thread(migrate, package, store_url, schema)
    engine = engine_for(store_url, schema, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(diff)
    finally:
        await engine.dispose()


@asynccontextmanager
async def migrated_past(
    package: str, store_url: str, schema: str, revision: str, old: Callable[[Any], None]
) -> AsyncIterator[Any]:
    """A migration's test: ``store_url`` migrated to ``revision``, ``old`` (a sync function
    of a connection) writing the rows from before, then migrated to the head; an engine on
    the store for the checks. After the block the store goes back down to ``revision``."""
    from alembic import command

    from tidings.core.db import engine_for
    from tidings.core.migrations import alembic_config, migrate

    await asyncio.to_thread(migrate, package, store_url, schema, revision)
    engine = engine_for(store_url, schema, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(old)
        await asyncio.to_thread(migrate, package, store_url, schema)
        yield engine
    finally:
        await engine.dispose()
    config = alembic_config(package, store_url, schema)
    await asyncio.to_thread(command.downgrade, config, revision)
