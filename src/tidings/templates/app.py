from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tidings.core.access import Access
from tidings.core.db import DbTimeouts
from tidings.core.web import app_database, create_service_app
from tidings.templates.categories import CategoryService
from tidings.templates.category_routes import router as category_router
from tidings.templates.router import router
from tidings.templates.service import TemplateService
from tidings.templates.settings import TemplatesSettings


def create_app(settings: TemplatesSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.access = Access(settings)
        async with app_database(
            app, settings.store_url, "templates", DbTimeouts.of(settings)
        ) as db:
            app.state.templates = TemplateService(db)
            app.state.categories = CategoryService(db)
            yield

    app = create_service_app(
        "templates",
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        description="Templates per code, channel and language, with version history; rendering.",
        cors_origins=settings.cors_origins,
        settings=settings,
    )
    app.include_router(category_router)  # first: /categories/ is not a template's code
    app.include_router(router)
    return app
