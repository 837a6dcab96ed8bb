"""The capture trigger (gateway migrations 0009, 0013) reports an event type once per round
of a notification, however its history goes back and forth: a relay's lost transaction
publishes again, so a second ``queued`` row follows the first copy's ``delivered``, and the
worker's report of the duplicate is a second ``delivered``; neither is a change. A resend
(a new round, after its ``pending`` row) is reported again. No webhooks worker runs in this
module, so what the trigger captured stays in the outbox to be counted."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import delete, insert, select

from tests.scenario import wait_for_status
from tests.system import System
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import delete_all, register, send
from tidings.core.db import utcnow
from tidings.gateway.models import NotificationEvent
from tidings.webhooks.store import OUTBOX, WebhookStore


async def _history(store: WebhookStore, nid: uuid.UUID, *statuses: str) -> None:
    """History rows as the relay and the status consumer write them, one statement each."""
    async with store.db.engine.begin() as conn:
        for status in statuses:
            await conn.execute(
                insert(NotificationEvent.__table__),  # type: ignore[arg-type]
                [{"notification_id": nid, "status": status, "created_at": utcnow()}],
            )


async def _captured(store: WebhookStore, nid: uuid.UUID) -> Counter[str]:
    async with store.db.engine.connect() as conn:
        rows = await conn.execute(
            select(OUTBOX.c.event_type).where(OUTBOX.c.notification_id == nid)
        )
        return Counter(r.event_type for r in rows)


async def test_a_status_is_reported_once_per_round_however_the_history_goes(
    system: System, store: WebhookStore
) -> None:
    gw = system.gateway
    await delete_all(gw)
    await register(gw, Receiver(), ["*"])
    [sent] = await send(gw, 1)
    await wait_for_status(gw, sent, "delivered")
    nid = uuid.UUID(sent)
    once = Counter({"notification.queued": 1, "notification.delivered": 1})
    try:
        assert await _captured(store, nid) == once

        await _history(store, nid, "queued", "delivered")  # published again, reported again
        assert await _captured(store, nid) == once

        await _history(store, nid, "pending", "queued", "delivered")  # a resend: a new round
        assert await _captured(store, nid) == once + once
    finally:  # the outbox is the session's: the next module's fan-out must not find these
        await delete_all(gw)
        async with store.db.engine.begin() as conn:
            await conn.execute(delete(OUTBOX).where(OUTBOX.c.notification_id == nid))
