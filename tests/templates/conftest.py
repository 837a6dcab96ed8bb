from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.helpers import app_client
from tests.templates.support import migrated_settings
from tidings.templates.app import create_app


@pytest.fixture
async def templates(pg_database: str) -> AsyncIterator[httpx.AsyncClient]:
    """The templates service on the run's PostgreSQL database, migrated, lifespan running."""
    async with app_client(create_app(await migrated_settings(pg_database))) as client:
        yield client
