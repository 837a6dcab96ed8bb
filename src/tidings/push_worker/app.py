"""The push worker's process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI

from tidings.core.bus import Bus
from tidings.core.lookups import TemplateDirectory
from tidings.core.worker import Deliver, create_worker_app
from tidings.push_worker.handlers import PushDelivery
from tidings.push_worker.settings import PushSettings


def create_app(settings: PushSettings, *, bus: Bus | None = None) -> FastAPI:
    async def make_deliver(
        stack: AsyncExitStack,
        templates: TemplateDirectory,
        add_health: Callable[[str, Callable[[], Awaitable[Any]]], None],
    ) -> Deliver:
        return PushDelivery(templates)

    return create_worker_app(
        "push",
        settings,
        store_url=settings.store_url,
        make_deliver=make_deliver,
        bus=bus,
        description="Push worker: consumes push.queue.",
    )
