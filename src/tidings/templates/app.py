from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tidings.core.db import open_database
from tidings.core.web import create_service_app
from tidings.templates.router import router
from tidings.templates.service import TemplateService
from tidings.templates.settings import TemplatesSettings


def create_app(settings: TemplatesSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = open_database(settings.store_url, "templates")
        app.state.templates = TemplateService(db)
        app.state.health.add("database", db.ping)
        try:
            yield
        finally:
            await db.close()

    app = create_service_app(
        "templates",
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        description="Templates per code, channel and language, with version history; rendering.",
    )
    app.include_router(router)
    return app
