"""The push worker's process."""

from __future__ import annotations

from contextlib import AsyncExitStack

from fastapi import FastAPI

from tidings.core.bus import Bus, Handler
from tidings.core.lookups import TemplateDirectory
from tidings.core.topology import PUSH_QUEUE
from tidings.core.worker import create_worker_app
from tidings.push_worker.handlers import PushHandler
from tidings.push_worker.settings import PushSettings


def create_app(settings: PushSettings, *, bus: Bus | None = None) -> FastAPI:
    async def make_handler(
        stack: AsyncExitStack, bus: Bus, templates: TemplateDirectory
    ) -> Handler:
        return PushHandler(bus, templates)

    return create_worker_app(
        "push",
        settings,
        queue=PUSH_QUEUE,
        make_handler=make_handler,
        bus=bus,
        description="Push worker: consumes push.queue.",
    )
