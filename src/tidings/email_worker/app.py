"""The email worker's process."""

from __future__ import annotations

from contextlib import AsyncExitStack

from fastapi import FastAPI

from tidings.core.bus import Bus, Handler
from tidings.core.lookups import TemplateDirectory
from tidings.core.topology import EMAIL_QUEUE
from tidings.core.worker import create_worker_app
from tidings.email_worker.handlers import EmailHandler
from tidings.email_worker.senders import EmailSender
from tidings.email_worker.senders.smtp import SmtpSender
from tidings.email_worker.settings import EmailSettings


def create_app(
    settings: EmailSettings, *, bus: Bus | None = None, sender: EmailSender | None = None
) -> FastAPI:
    async def make_handler(
        stack: AsyncExitStack, bus: Bus, templates: TemplateDirectory
    ) -> Handler:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        the_sender = sender or SmtpSender(
            settings.smtp_target,
            pool_size=settings.smtp_pool_size,
            timeout_s=settings.smtp_timeout_s,
            password=password,
        )
        stack.push_async_callback(the_sender.close)
        return EmailHandler(settings, bus, templates, the_sender)

    return create_worker_app(
        "email",
        settings,
        queue=EMAIL_QUEUE,
        make_handler=make_handler,
        bus=bus,
        description="Email worker: consumes email.queue, renders, sends over SMTP.",
    )
