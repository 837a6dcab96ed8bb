from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from tidings.core.access import Access
from tidings.core.bus import Bus, open_bus, unbatched
from tidings.core.cache import Cache, RedisOptions, open_cache
from tidings.core.db import DbTimeouts
from tidings.core.lookups import TemplateDirectory
from tidings.core.metrics import QUEUE_CONSUMERS, QUEUE_DEPTH
from tidings.core.outbound import Outbound
from tidings.core.ratelimit import open_rate_limiter
from tidings.core.tasks import Periodic
from tidings.core.topology import BULK_ROUTES, FAILED_QUEUE, STATUS_QUEUE
from tidings.core.web import app_database, create_service_app, make_http_client, service_client
from tidings.gateway import accept_body
from tidings.gateway.accept import Acceptance
from tidings.gateway.admin import router as admin_router
from tidings.gateway.broadcast_routes import router as broadcasts_router
from tidings.gateway.broadcasts import Broadcasts
from tidings.gateway.dashboard import routers as dashboard_routers
from tidings.gateway.dashboard_broadcasts import router as dashboard_broadcasts_router
from tidings.gateway.dashboard_samples import Sampler
from tidings.gateway.dashboard_webhooks import router as dashboard_webhooks_router
from tidings.gateway.deadletters import DeadLetters
from tidings.gateway.fanout import BulkAcceptance, Fanout
from tidings.gateway.feedback import Feedback
from tidings.gateway.keys import ApiKeys
from tidings.gateway.limits import Limits
from tidings.gateway.lookups import UserDirectory
from tidings.gateway.proxy import Proxy
from tidings.gateway.push_routes import create_push_router
from tidings.gateway.queries import NotificationQueries
from tidings.gateway.reconcile import Reconciler
from tidings.gateway.relay import OutboxRelay
from tidings.gateway.router import lean_routes, router
from tidings.gateway.settings import GatewaySettings
from tidings.gateway.state import GatewayState
from tidings.gateway.status import StatusConsumer
from tidings.gateway.suppressions import Suppressions
from tidings.gateway.topics import Topics
from tidings.gateway.transitions import StatusTransitions
from tidings.gateway.unsubscribe import router as unsubscribe_router
from tidings.gateway.webhook_endpoints import router as webhook_endpoints_router
from tidings.gateway.webhooks import router as webhooks_router
from tidings.webhooks.endpoints import Endpoints


async def read_queues(bus: Bus) -> None:
    """Queue depths and consumers, read from the broker for /metrics (every 5 s)."""
    for queue, (ready, consumers) in (await bus.depths()).items():
        QUEUE_DEPTH.labels(queue).set(ready)
        QUEUE_CONSUMERS.labels(queue).set(consumers)


async def _build(
    app: FastAPI,
    settings: GatewaySettings,
    stack: AsyncExitStack,
    bus: Bus | None,
    cache: Cache | None,
) -> GatewayState:
    """Everything the gateway runs on, opened on ``stack`` (closed with it) and wired by
    constructor: nothing is set on an object after it is made."""
    db = await stack.enter_async_context(
        app_database(app, settings.store_url, "gateway", DbTimeouts.of(settings))
    )
    if bus is None:
        bus = open_bus(settings)
        await bus.start()
        stack.push_async_callback(bus.close)
    if cache is None:
        cache = open_cache(settings.redis_url, settings.cache_namespace, RedisOptions.of(settings))
        stack.push_async_callback(cache.close)
    limiter = open_rate_limiter(
        settings.redis_url, settings.cache_namespace, RedisOptions.of(settings)
    )
    stack.push_async_callback(limiter.close)
    limits = Limits(limiter, settings)
    api_keys = ApiKeys(db)
    access = Access(
        settings, api_keys=api_keys.resolve, limit=limits.caller, limit_attempts=limits.attempts
    )
    # Look-ups carry the service credential; proxied requests carry the caller only.
    registry = app.state.registry
    users_client = service_client(
        "users",
        settings,
        stack,
        caller="gateway",
        breaker=settings.users_breaker,
        registry=registry,
    )
    templates_client = service_client(
        "templates",
        settings,
        stack,
        caller="gateway",
        breaker=settings.templates_breaker,
        registry=registry,
    )
    users_endpoints = users_client.endpoints
    templates_endpoints = templates_client.endpoints
    assert users_endpoints is not None and templates_endpoints is not None
    users_http = make_http_client(settings.url_of("users"), settings.http_timeout_s)
    templates_http = make_http_client(settings.url_of("templates"), settings.http_timeout_s)
    stack.push_async_callback(users_http.aclose)
    stack.push_async_callback(templates_http.aclose)
    email_worker_http = make_http_client(
        settings.url_of("email", settings.email_worker_url),
        settings.http_timeout_s,
        token=settings.secret_or_none("service_token"),
    )
    stack.push_async_callback(email_worker_http.aclose)

    async def instances() -> dict[str, list[str]]:
        return {
            "users": await users_endpoints.seen(),
            "templates": await templates_endpoints.seen(),
        }

    health = app.state.health
    health.info["instances"] = instances
    users = UserDirectory(users_client, cache, settings.user_cache_ttl_s)
    templates = TemplateDirectory(templates_client, settings.template_cache_ttl_s, last_known=True)
    # Two relays, two lanes: the accept path's and the broadcasts' (below); neither's poll
    # takes the other's rows.
    lanes = tuple(BULK_ROUTES.values())
    relay = OutboxRelay(
        db,
        bus,
        batch_size=settings.relay_batch_size,
        poll_s=settings.relay_poll_s,
        routes=lanes,
        work_batch=settings.work_batch,
    )
    suppressions = Suppressions(db)
    queries = NotificationQueries(db)
    transitions = StatusTransitions(db, queries)
    topics = Topics(db)
    # The gateway only marks cancelled broadcasts for the workers (core.outbound).
    outbound = Outbound(
        settings.redis_url,
        settings.cache_namespace,
        queue_s=1.0,
        burst=1,
        options=RedisOptions.of(settings),
    )
    stack.push_async_callback(outbound.close)
    broadcasts = Broadcasts(db, topics, outbound)
    # The broadcasts' rows are handed to a relay of their own: the accept path's relay
    # publishes what it is handed in order, and a transactional row must not wait behind a
    # page of a broadcast there (docs/broadcasts.md).
    bulk_relay = OutboxRelay(
        db,
        bus,
        batch_size=settings.relay_batch_size,
        poll_s=settings.relay_poll_s,
        routes=lanes,
        bulk=True,
        work_batch=settings.work_batch,
    )
    fanout = Fanout(
        db,
        topics,
        broadcasts,
        BulkAcceptance(
            db,
            users,
            templates,
            bulk_relay,
            suppressions,
            limits.recipient,
            settings.priority_lane_min,
        ),
        users_client,
        page_size=settings.broadcast_page_size,
        lease_s=settings.broadcast_lease_s,
        poll_s=settings.broadcast_poll_s,
        backlog=lambda: bulk_relay.held,
    )
    health.add("bus", bus.ping)
    health.add("cache", cache.ping)
    health.add("users_service", users_client.ping)
    health.add("users_data", users.health)
    health.add("templates_service", templates_client.ping)
    return GatewayState(
        settings=settings,
        db=db,
        access=access,
        bus=bus,
        cache=cache,
        limits=limits,
        api_keys=api_keys,
        users_client=users_client,
        templates_client=templates_client,
        users=users,
        proxy=Proxy(
            access.secret_key, (users_http, users_endpoints), (templates_http, templates_endpoints)
        ),
        suppressions=suppressions,
        feedback=Feedback(queries, users, users_client, suppressions, templates),
        relay=relay,
        acceptance=Acceptance(
            db,
            users,
            templates,
            relay,
            suppressions,
            limits.recipient,
            settings.priority_lane_min,
        ),
        queries=queries,
        transitions=transitions,
        dead_letters=DeadLetters(db, transitions, users, relay, bus),
        reconciler=Reconciler(
            db,
            users,
            relay,
            after_s=settings.reconcile_after_s,
            every_s=settings.reconcile_every_s,
            max_requeues=settings.reconcile_max_requeues,
        ),
        webhook_endpoints=Endpoints(
            db,
            settings.secret("secret_key"),
            allow_insecure=settings.webhook_allow_insecure,
            rotation_grace_s=settings.webhook_rotation_grace_s,
        ),
        topics=topics,
        broadcasts=broadcasts,
        fanout=fanout,
        bulk_relay=bulk_relay,
        sampler=Sampler(db, bus, keep_s=settings.dashboard_samples_keep_s),
        email_worker_http=email_worker_http,
    )


def create_app(
    settings: GatewaySettings, *, bus: Bus | None = None, cache: Cache | None = None
) -> FastAPI:
    """The gateway. ``bus`` and ``cache`` are passed in when several services share them in
    one process (the embedded default); otherwise the gateway opens and closes its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            state = await _build(app, settings, stack, bus, cache)
            app.state.gateway = state
            app.state.access = state.access  # core.access's dependency reads it there
            state.relay.start()
            stack.push_async_callback(state.relay.stop)
            state.reconciler.start()
            stack.push_async_callback(state.reconciler.stop)
            state.bulk_relay.start()
            stack.push_async_callback(state.bulk_relay.stop)
            state.fanout.start()
            stack.push_async_callback(state.fanout.stop)
            state.sampler.start()
            stack.push_async_callback(state.sampler.stop)
            the_bus = state.bus
            watcher = Periodic("queue-depths", lambda: read_queues(the_bus), 5.0)
            watcher.start()
            stack.push_async_callback(watcher.stop)
            consumer = StatusConsumer(state.transitions, state.feedback, the_bus)
            await the_bus.consume(STATUS_QUEUE, consumer, prefetch=settings.prefetch)
            # A batch of work messages dead-lettered whole (after its delivery limit, or by
            # an older worker that cannot read one) is a dead letter per notification.
            dead_letters = unbatched(state.dead_letters, the_bus, FAILED_QUEUE)
            await the_bus.consume(FAILED_QUEUE, dead_letters, prefetch=settings.prefetch)
            state.relay.wake()  # publish whatever an earlier run left in the outbox
            try:
                yield
            finally:
                # What publishes stops before the bus closes: a relay left running published
                # on the closed channel, failed and logged it batch after batch (its rows stay
                # in the outbox either way, for the next start). The stack stops them again:
                # a no-op.
                for task in (state.fanout, state.bulk_relay, state.relay):
                    await task.stop()
                if bus is None:  # stop consuming and drain, while the rest still works
                    await the_bus.close()

    app = create_service_app(
        "gateway",
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        description="The public entry point of Tidings: send notifications, follow their status.",
        cors_origins=settings.cors_origins,
        settings=settings,
        access_log_sample=settings.access_log_sample,
    )
    app.include_router(router)
    # The accept route ahead of FastAPI's router, which keeps it for the schema (core.web.lean)
    app.router.routes[0:0] = lean_routes()
    accept_body.document_body(app)
    app.include_router(admin_router)
    app.include_router(broadcasts_router)
    app.include_router(unsubscribe_router)
    app.include_router(webhooks_router)
    app.include_router(webhook_endpoints_router)
    app.include_router(create_push_router(settings.vapid_public_key))
    for dashboard_router in dashboard_routers:
        app.include_router(dashboard_router)
    app.include_router(dashboard_webhooks_router)
    app.include_router(dashboard_broadcasts_router)
    return app
