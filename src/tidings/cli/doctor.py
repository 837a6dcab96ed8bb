"""``tidings doctor``: the configuration and each dependency checked, one line each, with
what is wrong; exit status 1 when anything is."""

from __future__ import annotations

import argparse
import asyncio
import errno
import functools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from tidings.cli.gateway import admin_key
from tidings.core.settings import SERVICES, TidingsSettings

CHECK_TIMEOUT_S = 5.0


@dataclass
class Line:
    ok: bool
    what: str
    detail: str

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':4}  {self.what:<13} {self.detail}"


def shown(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{parts.username + '@' if parts.username else ''}{host}"
    try:
        netloc += f":{parts.port}" if parts.port else ""
    except ValueError:  # several hosts (a Sentinel URL): their list, without the credentials
        netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc).geturl()


def _refused(exc: BaseException | None) -> bool:
    """A refused connection, however the client library wrapped it."""
    seen = 0
    while exc is not None and seen < 10:
        if (
            isinstance(exc, ConnectionRefusedError)
            or getattr(exc, "errno", None) == errno.ECONNREFUSED
        ):
            return True
        if "Connect call failed" in str(exc) or "Error 111 " in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer in {CHECK_TIMEOUT_S:.0f}s"
    if _refused(exc):
        return "connection refused (is it running, on that port?)"
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


async def _checked(what: str, detail: str, probe: Callable[[], Awaitable[None]]) -> Line:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await probe()
    except Exception as exc:  # each failure is a line of the report, whatever it is
        return Line(False, what, f"{detail}: {_why(exc)}")
    return Line(True, what, detail)


async def _postgres(url: str) -> None:
    from sqlalchemy import text

    from tidings.core.db import engine_for

    engine = engine_for(url, "public", pool_size=1)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def _rabbitmq(url: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(url, timeout=CHECK_TIMEOUT_S)
    await connection.close()


async def _redis(url: str) -> None:
    from tidings.core.cache import redis_for

    # Its own client, not core.cache's shared pool: a one-off ping that wants Redis's raw
    # error (not a breaker's), bounded by _checked's timeout, and closed right after.
    client, close = redis_for(url, socket_connect_timeout=CHECK_TIMEOUT_S)
    try:
        await client.ping()
    finally:
        await close()


async def _smtp(host: str, port: int, implicit_tls: bool) -> None:
    import aiosmtplib

    smtp = aiosmtplib.SMTP(hostname=host, port=port, use_tls=implicit_tls, start_tls=False)
    await smtp.connect(timeout=CHECK_TIMEOUT_S)
    await smtp.quit()


def _configuration() -> tuple[list[Line], TidingsSettings | None]:
    from tidings.runner import service_settings

    try:
        settings = TidingsSettings()
        for service in SERVICES:
            service_settings(service)
    except ValidationError as exc:
        return [
            Line(
                False,
                "configuration",
                f"TIDINGS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}",
            )
            for e in exc.errors()
        ], None
    if settings.embedded:
        return [
            Line(
                True,
                "configuration",
                f"the embedded default (SQLite files and captured mail in {settings.data_dir}, "
                "in-process bus and cache)",
            )
        ], settings
    if not settings.amqp_url:
        return [
            Line(
                False,
                "configuration",
                "TIDINGS_AMQP_URL is not set: with TIDINGS_DATABASE_URL or TIDINGS_REDIS_URL set, "
                "the services run apart and reach each other through RabbitMQ",
            )
        ], settings
    return [Line(True, "configuration", "each service its own process")], settings


async def _dependencies(settings: TidingsSettings) -> list[Line]:
    from tidings.runner import STORES, capture_settings, store_url

    checks: list[Awaitable[Line]] = []
    databases = dict.fromkeys(store_url(service) for service, _ in STORES)
    for url in databases:
        if url.startswith("postgresql"):
            checks.append(_checked("PostgreSQL", shown(url), functools.partial(_postgres, url)))
    if not any(url.startswith("postgresql") for url in databases):
        writable = os.access(settings.data_dir, os.W_OK) or not settings.data_dir.exists()
        checks.append(_sqlite(settings, writable))
    if settings.amqp_url:
        from tidings.core.bus.rabbit import amqp_addresses

        for node in amqp_addresses(settings.amqp_url):  # a line per node of a cluster
            checks.append(_checked("RabbitMQ", shown(node), functools.partial(_rabbitmq, node)))
    if settings.redis_url:
        redis = settings.redis_url
        checks.append(_checked("Redis", shown(redis), lambda: _redis(redis)))
    smtp_url = capture_settings().smtp_url
    if smtp_url:
        parts = urlsplit(smtp_url)
        tls = parts.scheme == "smtps"
        host, port = parts.hostname or "localhost", parts.port or (465 if tls else 25)
        checks.append(_checked("SMTP", shown(smtp_url), lambda: _smtp(host, port, tls)))
    return list(await asyncio.gather(*checks))


async def _sqlite(settings: TidingsSettings, writable: bool) -> Line:
    where = f"files in {settings.data_dir}"
    return Line(writable, "SQLite", where if writable else f"{where}: not writable")


async def _health(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    answer = await client.get(f"{url}/health")
    body: dict[str, Any] = answer.json()
    return body


async def _services(settings: TidingsSettings) -> list[Line]:
    """Each service's /health, when any answers (none: not running, which is no fault)."""
    key = admin_key(settings)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    urls = {s: f"http://{urlsplit(settings.advertised_url(s)).netloc}" for s in SERVICES}
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S, headers=headers) as client:
        answers = await asyncio.gather(
            *(_health(client, url) for url in urls.values()), return_exceptions=True
        )
    if all(isinstance(a, httpx.ConnectError) for a in answers):  # none listens
        return [Line(True, "services", "not running (`tidings up` starts them)")]
    lines = []
    for (service, url), answer in zip(urls.items(), answers, strict=True):
        if isinstance(answer, BaseException):
            lines.append(Line(False, service, f"{url}/health: {_why(answer)}"))
        elif answer.get("success"):
            lines.append(Line(True, service, f"{url}/health: ok"))
        else:
            lines.append(Line(False, service, f"{url}/health: {answer.get('error')}"))
    return lines


async def diagnose() -> list[Line]:
    lines, settings = _configuration()
    if settings is None:
        return lines
    return lines + await _dependencies(settings) + await _services(settings)


def _doctor(_: argparse.Namespace) -> int:
    lines = asyncio.run(diagnose())
    for line in lines:
        print(line)
    failed = [line.what for line in lines if not line.ok]
    print(f"wrong: {', '.join(failed)}" if failed else "all good")
    return 1 if failed else 0


def add_commands(sub: Any) -> None:
    sub.add_parser(
        "doctor", help="check the configuration and each dependency (one line each)"
    ).set_defaults(func=_doctor)
