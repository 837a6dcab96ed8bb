"""The webhooks worker's process: a small HTTP app (/health, /metrics, /docs) whose lifespan
runs the fan-out and delivery loops (webhooks.worker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tidings.core.db import DbTimeouts, open_database
from tidings.core.netguard import Resolver, system_resolver
from tidings.core.web import create_service_app
from tidings.webhooks.secrets import SecretBox
from tidings.webhooks.sender import Sender
from tidings.webhooks.settings import WebhooksSettings
from tidings.webhooks.store import WebhookStore
from tidings.webhooks.worker import WebhookWorker


def create_app(settings: WebhooksSettings, *, resolve: Resolver = system_resolver) -> FastAPI:
    """``resolve``: how endpoint hosts are resolved (getaddrinfo; tests pass their own)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = open_database(settings.store_url, "gateway", DbTimeouts.of(settings))
        sender = Sender(
            SecretBox(settings.secret("secret_key")),
            allow_insecure=settings.webhook_allow_insecure,
            timeout_s=settings.webhook_timeout_s,
            response_bytes=settings.webhook_response_bytes,
            resolve=resolve,
        )
        worker = WebhookWorker(WebhookStore(db), sender, settings)
        app.state.worker = worker
        app.state.health.add("database", db.ping)
        worker.start()
        try:
            yield
        finally:
            await worker.stop(settings.shutdown_grace_s)
            await sender.close()
            await db.close()

    return create_service_app(
        "webhooks",
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        description="Delivers outbound webhooks (Standard Webhooks) to client endpoints.",
        cors_origins=settings.cors_origins,
        settings=settings,
    )
