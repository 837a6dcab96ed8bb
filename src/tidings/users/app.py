from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from argon2 import PasswordHasher
from fastapi import FastAPI

from tidings.core.db import open_database
from tidings.core.web import create_service_app
from tidings.users.router import router
from tidings.users.service import UserService
from tidings.users.settings import UsersSettings


def create_app(settings: UsersSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = open_database(settings.store_url, "users")
        app.state.users = UserService(db, PasswordHasher())
        app.state.health.add("database", db.ping)
        try:
            yield
        finally:
            await db.close()

    app = create_service_app(
        "users",
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        description="Users, their contact data and notification preferences.",
    )
    app.include_router(router)
    return app
