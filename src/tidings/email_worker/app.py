"""The email worker's process: a small HTTP app (health, docs) whose lifespan runs the consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from tidings.core.bus import Bus, open_bus
from tidings.core.lookups import TemplateDirectory
from tidings.core.topology import EMAIL_QUEUE
from tidings.core.web import ServiceClient, create_service_app, make_http_client
from tidings.email_worker.handlers import EmailHandler
from tidings.email_worker.senders import EmailSender
from tidings.email_worker.senders.smtp import SmtpSender
from tidings.email_worker.settings import EmailSettings


def create_app(
    settings: EmailSettings, *, bus: Bus | None = None, sender: EmailSender | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            the_bus = bus
            if the_bus is None:
                the_bus = open_bus(settings.amqp_url, delivery_limit=settings.delivery_limit)
                await the_bus.start()
                stack.push_async_callback(the_bus.close)
            the_sender = sender or SmtpSender(
                settings.smtp_target,
                pool_size=settings.smtp_pool_size,
                timeout_s=settings.smtp_timeout_s,
                password=settings.smtp_password.get_secret_value()
                if settings.smtp_password
                else None,
            )
            stack.push_async_callback(the_sender.close)
            http = make_http_client(settings.url_of("templates"), settings.http_timeout_s)
            stack.push_async_callback(http.aclose)
            templates_client = ServiceClient("templates", http)
            handler = EmailHandler(
                settings,
                the_bus,
                TemplateDirectory(templates_client, settings.template_cache_ttl_s),
                the_sender,
            )
            app.state.handler = handler
            app.state.health.add("bus", the_bus.ping)
            app.state.health.add("templates_service", templates_client.ping)
            await the_bus.consume(EMAIL_QUEUE, handler, prefetch=settings.prefetch)
            yield

    return create_service_app(
        "email",
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        description="Email worker: consumes email.queue, renders, sends over SMTP.",
    )
