"""The push tests' world: the five services in process (PostgreSQL, RabbitMQ, Redis), a
real Web Push receiver and a real FCM-compatible peer, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from tests.credentials import SETTINGS
from tests.helpers import free_port, wait_for_condition
from tests.push.fcm_peer import FcmPeer
from tests.push.webpush_peer import WebPushReceiver
from tests.system import System, start_system
from tidings.cli.vapid import generate_vapid_keys
from tidings.core.migrations import migrate
from tidings.runner import Server
from tidings.users import device_routes
from tidings.users.app import create_app as users_app
from tidings.users.settings import UsersSettings


def with_devices(app: FastAPI) -> FastAPI:
    """The users app with the devices router, until users/app.py includes it itself."""
    if not any(getattr(r, "path", "").endswith("/devices/") for r in app.routes):
        app.include_router(device_routes.router)
    return app


@dataclass
class PushWorld:
    system: System
    webpush: WebPushReceiver
    fcm: FcmPeer
    vapid_public_key: str
    users_server: Server
    users_task: asyncio.Task[None]

    async def close(self) -> None:
        await self.system.close()
        self.users_server.should_exit = True
        await self.users_task
        await self.webpush.close()
        await self.fcm.close()


async def start_world(
    pg_url: str, amqp_url: str, redis_url: str, namespace: str, **more: Any
) -> PushWorld:
    """``more``: settings of the test module's own, for every service."""
    private, public = generate_vapid_keys()
    webpush = await WebPushReceiver(public).start()
    fcm = await FcmPeer().start()
    common: dict[str, Any] = {
        **SETTINGS,
        "database_url": pg_url,
        "amqp_url": amqp_url,
        "redis_url": redis_url,
        "cache_namespace": namespace,
        "log_format": "text",
        "vapid_private_key": private,
        "vapid_public_key": public,
        "vapid_subject": "mailto:ops@tidings.example",
        "webpush_allow_insecure": True,
        "fcm_service_account_json": fcm.service_account_json(),
        "fcm_base_url": fcm.server.origin,
        # Probes of a down push service spend attempts; keep enough for the breaker test.
        "max_attempts": 10,
        "push_breaker_failures": 2,
        "push_breaker_reset_s": 1.0,
        **more,
    }
    users_port = free_port()
    # Past the default cap and registration rate: one test gives a user over a page of devices.
    users_settings = UsersSettings(
        **common,
        users_port=users_port,
        max_devices_per_user=1000,
        device_register_burst=1000,
    )
    await asyncio.to_thread(migrate, "tidings.users", users_settings.store_url, "users")
    # The push worker's own tables, beside core's delivery records in schema "push".
    await asyncio.to_thread(
        migrate, "tidings.push_worker", users_settings.database_for("push"), "push"
    )
    users_server = Server(
        uvicorn.Config(
            with_devices(users_app(users_settings)),
            host="127.0.0.1",
            port=users_port,
            log_config=None,
        )
    )
    users_task = asyncio.create_task(users_server.serve())
    await wait_for_condition(lambda: _started(users_server), timeout_s=30, what="users up")
    system = await start_system(
        skip=("users",), users_url=f"http://127.0.0.1:{users_port}", **common
    )
    return PushWorld(system, webpush, fcm, public, users_server, users_task)


async def _started(server: Server) -> bool:
    return bool(server.started)


@pytest.fixture(scope="module")
async def world(
    pg_database: str, amqp_vhost: str, redis_url: str, cache_namespace: str
) -> AsyncIterator[PushWorld]:
    started = await start_world(pg_database, amqp_vhost, redis_url, cache_namespace)
    try:
        yield started
    finally:
        await started.close()
