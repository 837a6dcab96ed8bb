"""The push worker's process: health and docs over HTTP, the consumer in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from tidings.core.bus import Bus, open_bus
from tidings.core.lookups import TemplateDirectory
from tidings.core.topology import PUSH_QUEUE
from tidings.core.web import ServiceClient, create_service_app, make_http_client
from tidings.push_worker.handlers import PushHandler
from tidings.push_worker.settings import PushSettings


def create_app(settings: PushSettings, *, bus: Bus | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            the_bus = bus
            if the_bus is None:
                the_bus = open_bus(settings.amqp_url, delivery_limit=settings.delivery_limit)
                await the_bus.start()
                stack.push_async_callback(the_bus.close)
            http = make_http_client(settings.url_of("templates"), settings.http_timeout_s)
            stack.push_async_callback(http.aclose)
            templates_client = ServiceClient("templates", http)
            handler = PushHandler(
                the_bus, TemplateDirectory(templates_client, settings.template_cache_ttl_s)
            )
            app.state.health.add("bus", the_bus.ping)
            app.state.health.add("templates_service", templates_client.ping)
            await the_bus.consume(PUSH_QUEUE, handler, prefetch=settings.prefetch)
            yield

    return create_service_app(
        "push",
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        description="Push worker: consumes push.queue.",
    )
