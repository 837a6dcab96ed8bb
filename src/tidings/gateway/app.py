from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from tidings.core.access import Access
from tidings.core.auth import Principal
from tidings.core.breaker import BreakerPolicy
from tidings.core.bus import Bus, open_bus
from tidings.core.cache import Cache, RedisOptions, open_cache
from tidings.core.db import DbTimeouts
from tidings.core.lookups import TemplateDirectory
from tidings.core.metrics import QUEUE_CONSUMERS, QUEUE_DEPTH
from tidings.core.ratelimit import open_rate_limiter
from tidings.core.topology import FAILED_QUEUE, STATUS_QUEUE
from tidings.core.web import app_database, create_service_app, make_http_client, service_client
from tidings.gateway.admin import router as admin_router
from tidings.gateway.dashboard import router as dashboard_router
from tidings.gateway.deadletters import DeadLetters
from tidings.gateway.feedback import Feedback
from tidings.gateway.keys import ApiKeys
from tidings.gateway.lookups import UserDirectory
from tidings.gateway.push_routes import create_push_router
from tidings.gateway.reconcile import Reconciler
from tidings.gateway.relay import OutboxRelay
from tidings.gateway.router import router
from tidings.gateway.service import NotificationService
from tidings.gateway.settings import GatewaySettings
from tidings.gateway.status import StatusConsumer
from tidings.gateway.suppressions import Suppressions
from tidings.gateway.unsubscribe import router as unsubscribe_router
from tidings.gateway.webhooks import router as webhooks_router

log = logging.getLogger("tidings.gateway")


async def watch_queues(bus: Bus, every_s: float = 5.0) -> None:
    """Queue depths and consumers, read from the broker for /metrics."""
    while True:
        for queue, (ready, consumers) in (await bus.depths()).items():
            QUEUE_DEPTH.labels(queue).set(ready)
            QUEUE_CONSUMERS.labels(queue).set(consumers)
        await asyncio.sleep(every_s)


def create_app(
    settings: GatewaySettings, *, bus: Bus | None = None, cache: Cache | None = None
) -> FastAPI:
    """The gateway. ``bus`` and ``cache`` are passed in when several services share them in
    one process (the embedded default); otherwise the gateway opens and closes its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = await stack.enter_async_context(
                app_database(app, settings.store_url, "gateway", DbTimeouts.of(settings))
            )
            api_keys = ApiKeys(db)
            app.state.api_keys = api_keys
            the_bus = bus
            if the_bus is None:
                the_bus = open_bus(settings)
                await the_bus.start()
                stack.push_async_callback(the_bus.close)
            the_cache = cache
            if the_cache is None:
                the_cache = open_cache(
                    settings.redis_url, settings.cache_namespace, RedisOptions.of(settings)
                )
                stack.push_async_callback(the_cache.close)
            limiter = open_rate_limiter(
                settings.redis_url, settings.cache_namespace, RedisOptions.of(settings)
            )
            app.state.limiter = limiter
            stack.push_async_callback(limiter.close)
            app.state.settings = settings
            app.state.cache = the_cache

            async def limit_caller(caller: Principal) -> None:
                """Per API key and per user; the admin key and the service token are the
                operator's own and not limited."""
                if caller.kind == "api_key":
                    await limiter.check(
                        f"key:{caller.subject}",
                        caller.rate_per_s or settings.rate_limit_per_s,
                        caller.burst or settings.rate_limit_burst,
                        "this API key",
                    )
                elif caller.kind == "user":
                    await limiter.check(
                        f"token:{caller.subject}",
                        settings.user_rate_per_s,
                        settings.user_burst,
                        "this user's requests",
                    )

            async def limit_attempts(address: str) -> None:
                await limiter.check(
                    f"auth:{address}",
                    settings.auth_failure_rate_per_s,
                    settings.auth_failure_burst,
                    "failed authentications from this address",
                )

            app.state.access = Access(
                settings,
                api_keys=api_keys.resolve,
                limit=limit_caller,
                limit_attempts=limit_attempts,
            )
            timeout_s = settings.http_timeout_s
            # Look-ups carry the service credential; proxied requests carry the caller only.
            registry = app.state.registry
            users_client = service_client(
                "users",
                settings,
                stack,
                caller="gateway",
                breaker=BreakerPolicy(
                    settings.users_breaker_failures, settings.users_breaker_reset_s
                ),
                registry=registry,
            )
            templates_client = service_client(
                "templates",
                settings,
                stack,
                caller="gateway",
                breaker=BreakerPolicy(
                    settings.templates_breaker_failures, settings.templates_breaker_reset_s
                ),
                registry=registry,
            )
            users_endpoints = users_client.endpoints
            templates_endpoints = templates_client.endpoints
            assert users_endpoints is not None and templates_endpoints is not None
            app.state.users_http = make_http_client(settings.url_of("users"), timeout_s)
            app.state.templates_http = make_http_client(settings.url_of("templates"), timeout_s)
            stack.push_async_callback(app.state.users_http.aclose)
            stack.push_async_callback(app.state.templates_http.aclose)
            app.state.users_endpoints = users_endpoints
            app.state.templates_endpoints = templates_endpoints

            async def instances() -> dict[str, list[str]]:
                return {
                    "users": await users_endpoints.seen(),
                    "templates": await templates_endpoints.seen(),
                }

            app.state.health.info["instances"] = instances

            app.state.users_client = users_client
            app.state.templates_client = templates_client
            users = UserDirectory(users_client, the_cache, settings.user_cache_ttl_s)
            app.state.user_directory = users
            templates = TemplateDirectory(
                templates_client, settings.template_cache_ttl_s, last_known=True
            )
            relay = OutboxRelay(
                db, the_bus, batch_size=settings.relay_batch_size, poll_s=settings.relay_poll_s
            )
            notifications = NotificationService(
                db, users, templates, relay, settings.priority_lane_min
            )
            suppressions = Suppressions(db)
            app.state.suppressions = suppressions
            notifications.suppressions = suppressions
            feedback = Feedback(notifications, users, suppressions)
            app.state.feedback = feedback
            notifications.recipient_limit = (
                limiter,
                settings.recipient_rate_per_s,
                settings.recipient_burst,
            )
            app.state.notifications = notifications
            app.state.relay = relay

            health = app.state.health
            health.add("bus", the_bus.ping)
            health.add("cache", the_cache.ping)
            health.add("users_service", users_client.ping)
            health.add("users_data", users.health)
            health.add("templates_service", templates_client.ping)

            dead_letters = DeadLetters(db, notifications, relay)
            app.state.dead_letters = dead_letters

            relay.start()
            stack.push_async_callback(relay.stop)
            reconciler = Reconciler(
                db,
                users,
                relay,
                after_s=settings.reconcile_after_s,
                every_s=settings.reconcile_every_s,
                max_requeues=settings.reconcile_max_requeues,
            )
            app.state.reconciler = reconciler
            reconciler.start()
            stack.push_async_callback(reconciler.stop)
            watcher = asyncio.create_task(watch_queues(the_bus), name="queue-depths")
            stack.callback(watcher.cancel)
            await the_bus.consume(
                STATUS_QUEUE,
                StatusConsumer(notifications, the_bus, feedback),
                prefetch=settings.prefetch,
            )
            await the_bus.consume(FAILED_QUEUE, dead_letters, prefetch=settings.prefetch)
            relay.wake()  # publish whatever an earlier run left in the outbox
            try:
                yield
            finally:
                if bus is None:  # stop consuming and drain first, while the rest still works
                    await the_bus.close()

    app = create_service_app(
        "gateway",
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        description="The public entry point of Tidings: send notifications, follow their status.",
        cors_origins=settings.cors_origins,
        settings=settings,
    )
    app.include_router(router)
    app.include_router(admin_router)
    app.include_router(unsubscribe_router)
    app.include_router(webhooks_router)
    app.include_router(create_push_router(settings.vapid_public_key))
    app.include_router(dashboard_router)
    return app
