"""The whole system in process (tests.system) with the webhooks worker beside it, and a
receiving peer (tests/webhooks/receiver.py). The retry schedule is short, so that an outage
and its recovery fit in a bounded test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from tests.gateway.conftest import system
from tests.helpers import free_port, wait_for_condition
from tests.system import System
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import delete_all
from tidings.core.db import DbTimeouts, open_database
from tidings.core.migrations import migrate
from tidings.runner import Server
from tidings.webhooks.app import create_app
from tidings.webhooks.settings import WebhooksSettings
from tidings.webhooks.store import WebhookStore

__all__ = ["system"]  # the whole system in process, as the gateway's tests start it

SHORT = {
    "webhook_allow_insecure": True,
    "webhook_retry_schedule_s": [0.5, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
    "webhook_retry_jitter": 0.1,
    "webhook_poll_s": 0.1,
    "webhook_breaker_failures": 3,
    "webhook_breaker_reset_s": 1.0,
    "webhook_timeout_s": 3.0,
    "webhook_lease_s": 10.0,
}


@pytest.fixture(scope="module")
def webhook_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture(scope="module")
def system_overrides(webhook_overrides: dict[str, Any]) -> dict[str, Any]:
    """For tests.gateway.conftest's ``system``: the short schedule and the module's own."""
    return {**SHORT, **webhook_overrides}


@pytest.fixture(scope="module", autouse=True)
async def no_endpoint_left(system: System) -> AsyncIterator[None]:
    """The database is the session's: no endpoint left to capture other modules' events."""
    yield
    await delete_all(system.gateway)


def worker_settings(system: System, **more: Any) -> WebhooksSettings:
    base = {**system.settings, "webhooks_port": free_port(), **more}
    return WebhooksSettings(**base)


@pytest.fixture
async def store(system: System) -> AsyncIterator[WebhookStore]:
    """The webhooks worker's store on the system's gateway database (no worker runs)."""
    settings = worker_settings(system)
    db = open_database(settings.store_url, "gateway", DbTimeouts.of(settings))
    try:
        yield WebhookStore(db)
    finally:
        await db.close()


class WorkerHandle:
    """The webhooks worker as an in-process HTTP service (its lifespan runs the loops)."""

    def __init__(self, settings: WebhooksSettings, **app_kwargs: Any) -> None:
        self.settings = settings
        self.app = create_app(settings, **app_kwargs)
        self.server = Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=settings.webhooks_port,
                log_config=None,
                proxy_headers=False,
            )
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> WorkerHandle:
        await asyncio.to_thread(migrate, "tidings.gateway", self.settings.store_url, "gateway")
        self.task = asyncio.create_task(self.server.serve())
        await wait_for_condition(self.server.listening.wait, timeout_s=30, what="worker up")
        return self

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.wait([self.task], timeout=30)


@pytest.fixture(scope="module")
async def worker(system: System) -> AsyncIterator[WorkerHandle]:
    handle = await WorkerHandle(worker_settings(system)).start()
    try:
        yield handle
    finally:
        await handle.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    peer = await Receiver().start()
    try:
        yield peer
    finally:
        await peer.stop()
