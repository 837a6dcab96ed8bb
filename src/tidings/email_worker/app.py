"""The email worker's process."""

from __future__ import annotations

from contextlib import AsyncExitStack

from fastapi import FastAPI

from tidings.core.breaker import CircuitBreaker
from tidings.core.bus import Bus
from tidings.core.lookups import TemplateDirectory
from tidings.core.metrics import watch_breaker
from tidings.core.web import HealthRegistry
from tidings.core.worker import Deliver, create_worker_app
from tidings.email_worker.bounces import open_bounce_receiver
from tidings.email_worker.dkim_signer import DkimSigner
from tidings.email_worker.handlers import EmailDelivery
from tidings.email_worker.senders import EmailSender
from tidings.email_worker.senders.smtp import SmtpSender
from tidings.email_worker.settings import EmailSettings


def create_app(
    settings: EmailSettings, *, bus: Bus | None = None, sender: EmailSender | None = None
) -> FastAPI:
    async def make_deliver(
        stack: AsyncExitStack,
        templates: TemplateDirectory,
        health: HealthRegistry,
    ) -> Deliver:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        the_sender = sender or SmtpSender(
            settings.smtp_target,
            pool_size=settings.smtp_pool_size,
            timeout_s=settings.smtp_timeout_s,
            password=password,
        )
        stack.push_async_callback(the_sender.close)
        breaker = CircuitBreaker(
            "smtp",
            failure_threshold=settings.smtp_breaker_failures,
            reset_timeout_s=settings.smtp_breaker_reset_s,
        )
        health.add("smtp", breaker.health)
        watch_breaker("email", "smtp", lambda: breaker.state)
        if settings.bounce_port is not None:
            await open_bounce_receiver(stack, settings, bus)
        signer = None
        if settings.dkim_private_key is not None:
            signer = DkimSigner(
                settings.dkim_private_key.get_secret_value(),
                settings.dkim_selector,
                settings.dkim_domain or settings.sender.domain,
            )
        return EmailDelivery(settings, templates, the_sender, breaker, signer)

    return create_worker_app(
        "email",
        settings,
        store_url=settings.store_url,
        make_deliver=make_deliver,
        bus=bus,
        description="Email worker: consumes email.queue, renders, sends over SMTP.",
    )
