"""The webhooks worker's process: a small HTTP app (/health, /metrics, /docs) whose lifespan
runs the fan-out and delivery loops (webhooks.worker)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event

from tidings.core.db import Database, DbTimeouts, open_database
from tidings.core.netguard import Resolver, system_resolver
from tidings.core.web import create_service_app
from tidings.webhooks.secrets import SecretBox
from tidings.webhooks.sender import Sender
from tidings.webhooks.settings import WebhooksSettings
from tidings.webhooks.store import WebhookStore
from tidings.webhooks.worker import WebhookWorker


def lower_priority() -> int:
    """The worker's own process (``tidings run webhooks``) made nicer by
    ``TIDINGS_WEBHOOK_NICE``, before any thread starts (threads inherit it): a background
    deliverer that yields the CPU to email and push where they share cores. Returns the
    niceness it runs at."""
    return os.nice(WebhooksSettings().webhook_nice)


def commit_without_waiting(db: Database) -> None:
    """The worker's transactions commit without waiting for their WAL flush
    (``synchronous_commit = off``, its sessions only): a database crash may lose its last
    few transactions, each whole: a claim (nothing was sent), an outcome (the message goes
    again, under its webhook-id: at least once), a fan-out (its outbox rows are still there).
    The delivery path's commits keep their guarantee and do not queue behind these."""
    if not db.is_postgres:
        return

    @event.listens_for(db.engine.sync_engine, "connect")
    def _no_flush_wait(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET synchronous_commit TO off")
        cursor.close()


def create_app(settings: WebhooksSettings, *, resolve: Resolver = system_resolver) -> FastAPI:
    """``resolve``: how endpoint hosts are resolved (getaddrinfo; tests pass their own)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = open_database(settings.store_url, "gateway", DbTimeouts.of(settings))
        commit_without_waiting(db)
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
