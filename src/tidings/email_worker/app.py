"""The email worker's process."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from tidings.core.breaker import CircuitBreaker
from tidings.core.bus import Bus
from tidings.core.cache import RedisOptions
from tidings.core.metrics import watch_breaker
from tidings.core.outbound import Outbound
from tidings.core.worker import Deliver, WorkerParts, create_worker_app
from tidings.email_worker.bounces import open_bounce_receiver
from tidings.email_worker.dkim_signer import DkimSigner
from tidings.email_worker.handlers import EmailDelivery
from tidings.email_worker.senders import EmailSender
from tidings.email_worker.senders.failover import FailoverSender
from tidings.email_worker.senders.limited import RateLimitedSender
from tidings.email_worker.senders.mailgun import MailgunSender
from tidings.email_worker.senders.smtp import SmtpSender
from tidings.email_worker.sent import SentMail, sent_router
from tidings.email_worker.settings import EmailSettings


def breaker_state(breaker: CircuitBreaker) -> Callable[[], str]:
    return lambda: breaker.state


def transport_order(settings: EmailSettings) -> list[str]:
    """The configured transport first; the other one behind it when it is configured too
    (SMTP always is: TIDINGS_SMTP_URL, or the capture server)."""
    if settings.email_transport == "mailgun":
        return ["mailgun", "smtp"]
    return ["smtp", "mailgun"] if settings.mailgun_api_key is not None else ["smtp"]


def open_transport(name: str, settings: EmailSettings) -> EmailSender:
    if name == "mailgun":
        if settings.mailgun_api_key is None or not settings.mailgun_domain:
            raise ValueError(
                "the mailgun transport needs TIDINGS_MAILGUN_API_KEY and TIDINGS_MAILGUN_DOMAIN"
            )
        return MailgunSender(
            settings.mailgun_api_key.get_secret_value(),
            settings.mailgun_domain,
            settings.mailgun_base_url,
            settings.smtp_timeout_s,
        )
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpSender(
        settings.smtp_target,
        pool_size=settings.smtp_pool_size,
        timeout_s=settings.smtp_timeout_s,
        password=password,
        allow_plaintext_auth=settings.smtp_allow_plaintext_auth,
    )


def rate_of(name: str, settings: EmailSettings) -> tuple[str, float | None]:
    """The outbound rate-limit key and rate of a transport (core.outbound)."""
    if name == "mailgun":
        return f"mailgun:{settings.mailgun_domain}", settings.mailgun_rate_per_s
    return f"smtp:{settings.smtp_target.rsplit('@', 1)[-1]}", settings.smtp_rate_per_s


def create_app(settings: EmailSettings, *, bus: Bus | None = None) -> FastAPI:
    async def make_deliver(parts: WorkerParts) -> Deliver:
        stack, health = parts.stack, parts.health
        outbound = Outbound(
            settings.redis_url,
            settings.cache_namespace,
            queue_s=settings.outbound_queue_s,
            burst=settings.outbound_burst,
            options=RedisOptions.of(settings),
        )
        stack.push_async_callback(outbound.close)
        transports = []
        for name in transport_order(settings):
            key, rate = rate_of(name, settings)
            transport: EmailSender = RateLimitedSender(
                open_transport(name, settings), outbound, key, rate
            )
            stack.push_async_callback(transport.close)
            breaker = CircuitBreaker(
                name,
                failure_threshold=settings.smtp_breaker_failures,
                reset_timeout_s=settings.smtp_breaker_reset_s,
            )
            health.add(name, breaker.health)
            watch_breaker("email", name, breaker_state(breaker))
            transports.append((name, transport, breaker))
        if settings.bounce_port is not None:
            await open_bounce_receiver(stack, settings, bus)
        signer = None
        if settings.dkim_private_key is not None:
            signer = DkimSigner(
                settings.dkim_private_key.get_secret_value(),
                settings.dkim_selector,
                settings.dkim_domain or settings.sender.domain,
            )
        sent = SentMail(
            parts.db,
            settings.sent_mail_keep_s,
            every_s=settings.sent_mail_purge_every_s,
            batch=settings.sent_mail_purge_batch,
        )
        sent.start()
        stack.push_async_callback(sent.stop)
        app.state.sent_mail = sent
        return outbound.delivering(
            EmailDelivery(settings, parts.templates, FailoverSender(transports), signer, sent)
        )

    app = create_worker_app(
        "email",
        settings,
        store_url=settings.store_url,
        make_deliver=make_deliver,
        bus=bus,
        description="Email worker: consumes email.queue, renders, sends over SMTP.",
    )
    app.include_router(sent_router(settings.secret_or_none("service_token")))
    return app
