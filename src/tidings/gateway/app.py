from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from tidings.core.bus import Bus, open_bus
from tidings.core.cache import Cache, open_cache
from tidings.core.lookups import TemplateDirectory
from tidings.core.topology import STATUS_QUEUE
from tidings.core.web import ServiceClient, app_database, create_service_app, make_http_client
from tidings.gateway.lookups import UserDirectory
from tidings.gateway.relay import OutboxRelay
from tidings.gateway.router import router
from tidings.gateway.service import NotificationService
from tidings.gateway.settings import GatewaySettings
from tidings.gateway.status import StatusConsumer


def create_app(
    settings: GatewaySettings, *, bus: Bus | None = None, cache: Cache | None = None
) -> FastAPI:
    """The gateway. ``bus`` and ``cache`` are passed in when several services share them in
    one process (the embedded default); otherwise the gateway opens and closes its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(app_database(app, settings.store_url, "gateway"))
            the_bus = bus
            if the_bus is None:
                the_bus = open_bus(settings.amqp_url, delivery_limit=settings.delivery_limit)
                await the_bus.start()
                stack.push_async_callback(the_bus.close)
            the_cache = cache
            if the_cache is None:
                the_cache = open_cache(settings.redis_url, settings.cache_namespace)
                stack.push_async_callback(the_cache.close)
            users_http = make_http_client(settings.url_of("users"), settings.http_timeout_s)
            templates_http = make_http_client(settings.url_of("templates"), settings.http_timeout_s)
            stack.push_async_callback(users_http.aclose)
            stack.push_async_callback(templates_http.aclose)
            app.state.users_http = users_http
            app.state.templates_http = templates_http

            users = UserDirectory(
                ServiceClient("users", users_http), the_cache, settings.user_cache_ttl_s
            )
            templates_client = ServiceClient("templates", templates_http)
            templates = TemplateDirectory(templates_client, settings.template_cache_ttl_s)
            relay = OutboxRelay(
                db, the_bus, batch_size=settings.relay_batch_size, poll_s=settings.relay_poll_s
            )
            notifications = NotificationService(db, users, templates, relay)
            app.state.notifications = notifications
            app.state.relay = relay

            health = app.state.health
            health.add("bus", the_bus.ping)
            health.add("cache", the_cache.ping)
            health.add("users_service", users.health)
            health.add("templates_service", templates_client.ping)

            relay.start()
            stack.push_async_callback(relay.stop)
            await the_bus.consume(
                STATUS_QUEUE, StatusConsumer(notifications), prefetch=settings.prefetch
            )
            relay.wake()  # publish whatever an earlier run left in the outbox
            yield

    app = create_service_app(
        "gateway",
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        description="The public entry point of Tidings: send notifications, follow their status.",
    )
    app.include_router(router)
    return app
