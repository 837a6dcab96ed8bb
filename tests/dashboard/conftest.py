"""The dashboard tests: the five services in process (tests/gateway/conftest.py's `system`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from tests.credentials import ADMIN

# The fixtures these tests use: the system in process, and `tidings up --replicas` (test_replicas).
from tests.faults.test_replicas import smtp, up  # noqa: F401
from tests.gateway.conftest import system  # noqa: F401
from tests.helpers import wait_for_condition
from tests.scenario import send_one, wait_for_status
from tests.system import System


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, Any]:
    # Two quick attempts, then a dead letter; the SMTP breaker kept out of the way so a
    # replay right after the server is back is delivered.
    return {"max_attempts": 2, "max_wait_s": 2.0, "smtp_breaker_failures": 1_000_000}


async def schedule_one(gw: httpx.AsyncClient) -> dict[str, Any]:
    """As ``send_one``, due in two hours: it stays scheduled for the test."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    return await send_one(gw, send_at=later.isoformat())


async def make_dead_letter(tidings: System) -> tuple[str, int]:
    """A notification dead-lettered while the SMTP peer is down (it stays down: the caller
    starts it again). Its id and its dead letter's id."""
    await tidings.smtp.stop()
    sent = await send_one(tidings.gateway)
    nid = str(sent["notification_id"])
    await wait_for_status(tidings.gateway, nid, "failed", timeout_s=60)

    async def letter() -> int | None:
        answer = await tidings.gateway.get(
            "/api/v1/admin/dead-letters/", params={"notification_id": nid}, headers=ADMIN
        )
        rows = answer.json()["data"]
        return int(rows[0]["dead_letter_id"]) if rows else None

    found: int = await wait_for_condition(letter, timeout_s=30, what=f"dead letter of {nid}")
    return nid, found


def dashboard_client(tidings: System) -> httpx.AsyncClient:
    """A browser-like client: no Authorization header, cookies kept."""
    return httpx.AsyncClient(base_url=str(tidings.gateway.base_url), timeout=10)
