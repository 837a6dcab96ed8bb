from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from argon2 import PasswordHasher
from fastapi import FastAPI

from tidings.core.access import Access
from tidings.core.cache import RedisOptions
from tidings.core.db import DbTimeouts
from tidings.core.ratelimit import open_rate_limiter
from tidings.core.web import app_database, create_service_app, service_client
from tidings.users import device_routes
from tidings.users.auth_routes import router as auth_router
from tidings.users.categories import CriticalCategories
from tidings.users.devices_service import DeviceLimits, DeviceService
from tidings.users.router import router
from tidings.users.service import UserService
from tidings.users.settings import UsersSettings


def create_app(settings: UsersSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.access = Access(settings)
        # Counts device registrations per user (DeviceLimits).
        app.state.limiter = open_rate_limiter(
            settings.redis_url, settings.cache_namespace, RedisOptions.of(settings)
        )
        async with (
            AsyncExitStack() as stack,
            app_database(app, settings.store_url, "users", DbTimeouts.of(settings)) as db,
        ):
            # Categories belong to the templates service: asked which are critical.
            templates = service_client(
                "templates",
                settings,
                stack,
                caller="users",
                breaker=settings.templates_breaker,
                registry=app.state.registry,
            )
            app.state.users = UserService(db, PasswordHasher(), CriticalCategories(templates))
            app.state.devices = DeviceService(
                db,
                allow_insecure=settings.webpush_allow_insecure,
                limits=DeviceLimits(
                    app.state.limiter,
                    settings.max_devices_per_user,
                    settings.device_register_rate_per_s,
                    settings.device_register_burst,
                ),
            )
            try:
                yield
            finally:
                await app.state.limiter.close()

    app = create_service_app(
        "users",
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        description="Users, their contact data and notification preferences; login.",
        cors_origins=settings.cors_origins,
        settings=settings,
    )
    app.include_router(router)
    app.include_router(auth_router)
    app.include_router(device_routes.router)
    return app
