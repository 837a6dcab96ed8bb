"""What both delivery workers share: their process (a small HTTP app for /health and /docs
whose lifespan runs the consumer), and how a failed delivery is reported and dead-lettered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from tidings.core.bus import Bus, DeadLetter, Handler, open_bus
from tidings.core.errors import DeliveryError
from tidings.core.lookups import TemplateDirectory
from tidings.core.messages import Channel, NotificationMessage, StatusEvent
from tidings.core.settings import TidingsSettings
from tidings.core.status import report
from tidings.core.web import ServiceClient, create_service_app, make_http_client

# Builds a worker's handler once its bus and template directory exist; ``stack`` takes
# whatever the handler needs closed at shutdown.
HandlerFactory = Callable[[AsyncExitStack, Bus, TemplateDirectory], Awaitable[Handler]]


async def fail(
    bus: Bus, n: NotificationMessage, channel: Channel, exc: DeliveryError
) -> DeadLetter:
    """Report ``n`` failed with the classified reason; the caller raises what this returns."""
    reason = f"{exc.kind}: {exc.message}"
    await report(
        bus,
        StatusEvent(
            notification_id=n.notification_id,
            status="failed",
            channel=channel,
            error=reason,
            attempt=n.attempt,
        ),
    )
    return DeadLetter(reason)


def create_worker_app(
    service: str,
    settings: TidingsSettings,
    *,
    queue: str,
    make_handler: HandlerFactory,
    bus: Bus | None = None,
    description: str,
) -> FastAPI:
    """A worker's app. ``bus`` is passed in when services share one process (embedded)."""

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
            templates = TemplateDirectory(templates_client, settings.template_cache_ttl_s)
            handler = await make_handler(stack, the_bus, templates)
            app.state.handler = handler
            app.state.health.add("bus", the_bus.ping)
            app.state.health.add("templates_service", templates_client.ping)
            await the_bus.consume(queue, handler, prefetch=settings.prefetch)
            yield

    return create_service_app(
        service, max_body_bytes=settings.max_body_bytes, lifespan=lifespan, description=description
    )
