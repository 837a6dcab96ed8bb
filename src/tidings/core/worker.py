"""What both delivery workers share: the flow of one message (claim, deliver, retry or
dead-letter, report) and their process (a small HTTP app for /health and /docs whose lifespan
runs the consumer). A channel supplies only ``deliver``: render and send one notification."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from tidings.core.breaker import BreakerOpen
from tidings.core.bus import Bus, BusMessage, DeadLetter, Handler, open_bus, parse
from tidings.core.db import open_database
from tidings.core.deliveries import DeliveryStore
from tidings.core.errors import (
    DeliveryError,
    DependencyUnavailable,
    NoRecipient,
    ProviderAuthError,
    TransientError,
)
from tidings.core.lookups import TemplateDirectory
from tidings.core.messages import Channel, NotificationMessage, StatusEvent, StatusValue, now_ms
from tidings.core.metrics import DELIVERY_ERRORS, RETRIES, STAGE_SECONDS
from tidings.core.retry import RetryPolicy, tier_for
from tidings.core.settings import TidingsSettings
from tidings.core.status import report
from tidings.core.topology import CHANNEL_QUEUES, CHANNEL_ROUTES, PRIORITY_QUEUES, RETRY_TIERS_MS
from tidings.core.web import HealthRegistry, create_service_app, service_client

log = logging.getLogger("tidings.worker")

# How long a message held by a provider-auth failure waits before it tries again.
PROVIDER_AUTH_WAIT_S = 60.0

# Render and send one notification; returns the receiving side's reply. Raises a
# DeliveryError (classified) or DependencyUnavailable (a breaker is open, a service is down:
# the message waits without spending an attempt).
Deliver = Callable[[NotificationMessage], Awaitable[str]]


class DeliveryFlow:
    def __init__(
        self,
        channel: Channel,
        bus: Bus,
        deliveries: DeliveryStore,
        policy: RetryPolicy,
        deliver: Deliver,
        max_wait_s: float = 3600.0,
    ) -> None:
        self.max_wait_s = max_wait_s
        self.channel = channel
        self.route = CHANNEL_ROUTES[channel]
        self.bus = bus
        self.deliveries = deliveries
        self.policy = policy
        self.deliver = deliver

    async def _report(self, n: NotificationMessage, status: StatusValue, **fields: Any) -> None:
        event = StatusEvent(
            notification_id=n.notification_id,
            status=status,
            channel=self.channel,
            attempt=n.attempt,
            round=n.round,
            **fields,
        )
        await report(self.bus, event)

    async def _later(self, n: NotificationMessage, delay_s: float) -> None:
        await self.bus.publish(self.route, n.dumps(), message_id=n.notification_id, delay_s=delay_s)

    async def __call__(self, message: BusMessage) -> None:
        n = parse(NotificationMessage, message)
        claim = await self.deliveries.claim(n.notification_id, n.round)
        if n.first_try_ms is None:
            n = n.model_copy(update={"first_try_ms": now_ms()})
        if claim.result == "sent":
            # A redelivery or a duplicate: never send again; repeat the report, which may
            # be what was lost.
            await self._report(
                n, "delivered", detail=f"duplicate message suppressed: {claim.reply}"
            )
            return
        if claim.result == "failed":
            log.info("duplicate of failed notification %s dropped", n.notification_id)
            return
        if claim.result == "busy":
            await self._later(n, claim.wait_s + 1)
            return
        started = time.perf_counter()
        try:
            # Shielded: losing the broker connection cancels its handlers, and an SMTP
            # dialogue cut after the server took the message would mean a duplicate later.
            reply = await asyncio.shield(self._send(n))
        except DependencyUnavailable as exc:
            await self._wait(n, exc)
            return
        except ProviderAuthError as exc:
            # Alert and hold: our credentials are wrong, not the message; it waits (without
            # spending attempts) for someone to fix them, up to max_wait_s.
            log.error(
                "ALERT provider refused our credentials: %s", exc.message, extra={"alert": True}
            )
            await self._wait(
                n, DependencyUnavailable(f"provider-auth: {exc.message}"), PROVIDER_AUTH_WAIT_S
            )
            return
        except TransientError as exc:
            await self._retry_or_fail(n, exc)
            return
        except NoRecipient as exc:
            await self._skip(n, exc.message)
            return
        except DeliveryError as exc:
            DELIVERY_ERRORS.labels(self.channel, exc.kind).inc()
            dead_address = n.recipient.email if self.channel == "email" else None
            await self._fail(
                n,
                f"{exc.kind}: {exc.message}",
                suppress=dead_address if exc.kind == "recipient_invalid" else None,
            )
        log.info(
            "notification %s sent",
            n.notification_id,
            extra={
                "notification_id": n.notification_id,
                "request_id": n.request_id,
                "channel": self.channel,
                "attempt": n.attempt,
                "duration_ms": round((time.perf_counter() - started) * 1e3, 2),
            },
        )
        STAGE_SECONDS.labels(self.channel, "sent").observe(
            max(0.0, (now_ms() - n.created_at_ms) / 1000)
        )
        await self._report(n, "delivered", detail=f"accepted: {reply}"[:500])

    async def _send(self, n: NotificationMessage) -> str:
        reply = await self.deliver(n)
        await self.deliveries.mark_sent(n.notification_id, reply)
        return reply

    async def _wait(
        self, n: NotificationMessage, exc: DependencyUnavailable, wait_s: float | None = None
    ) -> None:
        """A breaker is open or a dependency is down: try again later without spending an
        attempt, until the notification has waited ``max_wait_s`` in all."""
        waited_s = (now_ms() - (n.first_try_ms or now_ms())) / 1000
        if waited_s > self.max_wait_s:
            await self._fail(
                n, f"transient: still unavailable after {self.max_wait_s:g}s: {exc.message}"
            )
        await self.deliveries.release(n.notification_id, exc.message)
        if wait_s is None:
            wait_s = exc.retry_after_s if isinstance(exc, BreakerOpen) else self.policy.base_s
        await self._report(
            n, "pending", detail=f"waiting {tier_for(wait_s) / 1000:g}s: {exc.message}"
        )
        await self._later(n, wait_s)

    async def _retry_or_fail(self, n: NotificationMessage, exc: DeliveryError) -> None:
        DELIVERY_ERRORS.labels(self.channel, exc.kind).inc()
        error = f"attempt {n.attempt}: {exc.kind}: {exc.message}"
        if not self.policy.should_retry(n.attempt):
            await self._fail(
                n.model_copy(update={"errors": [*n.errors, error]}),
                f"{exc.kind}: gave up after {n.attempt} attempts; last error: {exc.message}",
            )
        await self.deliveries.release(n.notification_id, error)
        RETRIES.labels(self.channel).inc()
        delay_s = self.policy.backoff_s(n.attempt)
        retry_after_s = getattr(exc, "retry_after_s", None)
        if retry_after_s:
            # Delays round down to a tier; the peer's Retry-After must round up instead.
            floor_s = next((t for t in RETRY_TIERS_MS if t >= retry_after_s * 1000), None)
            delay_s = max(delay_s, (floor_s or RETRY_TIERS_MS[-1]) / 1000)
        await self._report(
            n, "pending", error=error, detail=f"retry in {tier_for(delay_s) / 1000:g}s"
        )
        await self._later(
            n.model_copy(update={"attempt": n.attempt + 1, "errors": [*n.errors, error]}), delay_s
        )

    async def _skip(self, n: NotificationMessage, reason: str) -> None:
        """Nothing to deliver to: final (a duplicate message is dropped), reported
        ``skipped`` with the reason, acknowledged, never dead-lettered."""
        await self.deliveries.mark_failed(n.notification_id, f"skipped: {reason}")
        await self._report(n, "skipped", detail=reason[:500])

    async def _fail(self, n: NotificationMessage, reason: str, suppress: str | None = None) -> None:
        """Final: record it, report it, and raise the DeadLetter that sends it to failed.queue."""
        await self.deliveries.mark_failed(n.notification_id, reason)
        await self._report(n, "failed", error=reason, suppress=suppress)
        raise DeadLetter(
            reason,
            headers={"x-tidings-attempts": n.attempt, "x-tidings-errors": n.errors[-20:]},
        )


# Builds a worker's ``deliver`` once its dependencies exist; ``stack`` takes whatever it
# needs closed at shutdown; ``health`` takes its /health checks (and facts, in ``info``).
DeliverFactory = Callable[[AsyncExitStack, TemplateDirectory, HealthRegistry], Awaitable[Deliver]]


def create_worker_app(
    service: Channel,
    settings: TidingsSettings,
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
            db = open_database(store_url, service)
            stack.push_async_callback(db.close)
            health.add("database", db.ping)
            the_bus = bus
            if the_bus is None:
                the_bus = open_bus(settings)
                await the_bus.start()
                stack.push_async_callback(the_bus.close)
            templates_client = service_client(
                "templates", settings, stack, caller=service, registry=app.state.registry
            )
            templates = TemplateDirectory(templates_client, settings.template_cache_ttl_s)
            deliver = await make_deliver(stack, templates, health)
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
            handler: Handler = flow
            await the_bus.consume(CHANNEL_QUEUES[service], handler, prefetch=settings.prefetch)
            # Its own consumer, so a backlog in the normal queue never holds it up.
            await the_bus.consume(PRIORITY_QUEUES[service], handler, prefetch=settings.prefetch)
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
