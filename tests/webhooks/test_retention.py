"""Retention: delivered messages older than ``webhook_retention_s`` are deleted, with their
attempts, by the webhooks worker, ``webhook_retention_batch`` at a time; failed ones stay
(they can be replayed)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select

from tests.helpers import wait_for_condition
from tests.system import System
from tests.webhooks.conftest import WorkerHandle, worker_settings
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import ENDPOINTS, delete_all, register, send
from tidings.core.db import DbTimeouts, open_database, utcnow
from tidings.webhooks.store import ATTEMPTS, WebhookStore

N = 4
PATH = 2  # queued, delivered
BATCH = 3


async def total(system: System, endpoint: dict[str, str], state: str) -> int:
    page = await system.gateway.get(
        f"{ENDPOINTS}{endpoint['endpoint_id']}/messages/?state={state}&limit=1"
    )
    assert page.status_code == 200, page.text
    found: int = page.json()["meta"]["total"]
    return found


async def test_delivered_messages_past_retention_are_deleted_in_batches(system: System) -> None:
    gw = system.gateway
    await delete_all(gw)
    good, bad = await Receiver().start(), await Receiver().start()
    bad.answer = 500
    settings = worker_settings(system, webhook_retry_schedule_s=[0.2])
    db = open_database(settings.store_url, "gateway", DbTimeouts.of(settings))
    store = WebhookStore(db)
    kept = await WorkerHandle(settings).start()  # the default retention: a week
    try:
        ok = await register(gw, good, ["*"])
        failing = await register(gw, bad, ["notification.delivered"])
        await send(gw, N)
        await good.wait_for(lambda: len(good.accepted) >= N * PATH, 60, "all delivered")

        async def failed() -> bool:
            return await total(system, failing, "failed") == N

        await wait_for_condition(failed, timeout_s=60, what="the failing endpoint's failed")
        await kept.stop()
        assert await total(system, ok, "delivered") == N * PATH

        # One pass deletes at most a batch, and nothing younger than its cut.
        assert await store.purge_delivered(utcnow() - dt.timedelta(hours=1), BATCH) == 0
        assert await store.purge_delivered(utcnow() + dt.timedelta(seconds=1), BATCH) == BATCH
        assert await total(system, ok, "delivered") == N * PATH - BATCH

        # The worker, with a short retention: the rest goes, a batch at a time.
        short = worker_settings(
            system,
            webhook_retry_schedule_s=[0.2],
            webhook_retention_s=0.5,
            webhook_retention_every_s=0.1,
            webhook_retention_batch=BATCH,
        )
        purging = await WorkerHandle(short).start()
        try:

            async def purged() -> bool:
                return await total(system, ok, "delivered") == 0

            await wait_for_condition(purged, timeout_s=60, what="delivered messages purged")
            assert purging.app.state.worker.purged == N * PATH - BATCH
        finally:
            await purging.stop()
        async with db.engine.connect() as conn:

            async def attempts_of(endpoint: dict[str, str]) -> int:
                query = select(func.count()).where(
                    ATTEMPTS.c.endpoint_id == uuid.UUID(endpoint["endpoint_id"])
                )
                return int(await conn.scalar(query) or 0)

            assert await attempts_of(ok) == 0  # the attempts went with their messages
            assert await attempts_of(failing) == N * 2  # the failed: kept, both attempts
        assert await total(system, failing, "failed") == N
    finally:
        await kept.stop()
        await db.close()
        await good.stop()
        await bad.stop()
