"""What both delivery workers share: their process (a small HTTP app for /health and /docs
whose lifespan runs the consumer) around the flow of one message (core.flow)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from tidings.core.bus import Bus, Handler, open_bus, unbatched
from tidings.core.db import Database, DbTimeouts, open_database
from tidings.core.deliveries import DeliveryStore
from tidings.core.discovery import Registry
from tidings.core.flow import Deliver, DeliveryFlow
from tidings.core.lookups import TemplateDirectory
from tidings.core.messages import Channel
from tidings.core.retry import RetryPolicy
from tidings.core.settings import WorkerSettings
from tidings.core.topology import BULK_QUEUES, CHANNEL_QUEUES, PRIORITY_QUEUES
from tidings.core.web import HealthRegistry, create_service_app, service_client

__all__ = ["Deliver", "DeliveryFlow", "WorkerParts", "create_worker_app"]


@dataclass(frozen=True)
class WorkerParts:
    """What a worker's ``deliver`` is built from, opened by the worker's lifespan: ``stack``
    takes whatever it needs closed at shutdown; ``db`` is the worker's store (the delivery
    records'; a channel's own tables share it); ``templates`` fetches and renders;
    ``health`` takes its /health checks (and facts, in ``info``); ``registry`` is discovery's,
    for the clients of other services it opens (None without discovery)."""

    stack: AsyncExitStack
    db: Database
    templates: TemplateDirectory
    health: HealthRegistry
    registry: Registry | None


# Builds a worker's ``deliver`` once its dependencies exist.
DeliverFactory = Callable[[WorkerParts], Awaitable[Deliver]]


def create_worker_app(
    service: Channel,
    settings: WorkerSettings,
    *,
    store_url: str,
    make_deliver: DeliverFactory,
    bus: Bus | None = None,
    description: str,
) -> FastAPI:
    """A worker's app. ``bus`` is passed in when services share one process (embedded)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            health = app.state.health
            db = open_database(store_url, service, DbTimeouts.for_worker(settings))
            stack.push_async_callback(db.close)
            health.add("database", db.ping)
            the_bus = bus
            if the_bus is None:
                the_bus = open_bus(settings)
                await the_bus.start()
                stack.push_async_callback(the_bus.close)
            templates_client = service_client(
                "templates",
                settings,
                stack,
                caller=service,
                breaker=settings.templates_breaker,
                registry=app.state.registry,
            )
            templates = TemplateDirectory(templates_client, settings.template_cache_ttl_s)
            registry = app.state.registry
            deliver = await make_deliver(WorkerParts(stack, db, templates, health, registry))
            flow = DeliveryFlow(
                service,
                the_bus,
                DeliveryStore(db, settings.delivery_lease_s),
                RetryPolicy(settings.max_attempts, settings.retry_base_s, settings.retry_cap_s),
                deliver,
                settings.max_wait_s,
            )
            app.state.flow = flow
            health.add("bus", the_bus.ping)
            health.add("templates_service", templates_client.ping)
            # Each consumer: the relay's batches taken apart (core.bus.unbatched), and as
            # many messages held as make its prefetch in notifications.
            for queue, prefetch in (
                (CHANNEL_QUEUES[service], settings.prefetch),
                # Its own consumer, so a backlog in the normal queue never holds it up.
                (PRIORITY_QUEUES[service], settings.prefetch),
                # The bulk lane (broadcasts): its own consumer and prefetch, beside the others.
                (BULK_QUEUES[service], settings.bulk_prefetch),
            ):
                handler: Handler = unbatched(flow, the_bus, queue)
                messages = max(1, -(-prefetch // settings.work_batch))
                await the_bus.consume(queue, handler, prefetch=messages)
            try:
                yield
            finally:
                if bus is None:  # stop consuming and drain first, while the rest still works
                    await the_bus.close()

    return create_service_app(
        service,
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        description=description,
        cors_origins=settings.cors_origins,
        settings=settings,
    )
