"""The outbox relay: publishes what the gateway committed, then deletes it.

Woken at once by ``wake()`` after each commit in this process; a slow poll catches rows other
replicas left behind or whose publish failed. Rows are claimed with ``FOR UPDATE SKIP
LOCKED`` so relays of several replicas share the work. A crash between the broker's confirm
and the delete publishes a row twice (the workers de-duplicate), never loses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update

from tidings.core.bus import Bus
from tidings.core.db import Database, utcnow
from tidings.core.errors import DependencyUnavailable
from tidings.core.logs import correlation_id
from tidings.core.metrics import STAGE_SECONDS, child
from tidings.core.status import Status
from tidings.gateway.models import Notification, NotificationEvent, OutboxMessage

log = logging.getLogger(__name__)


class OutboxRelay:
    """Publishes the outbox (module docstring); ``flush`` is one batch."""

    def __init__(self, db: Database, bus: Bus, *, batch_size: int, poll_s: float) -> None:
        self.db = db
        self.bus = bus
        self.batch_size = batch_size
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()
            try:
                while await self.flush() == self.batch_size:
                    pass
            except (DependencyUnavailable, OSError) as exc:
                log.warning("relay could not publish, will retry: %s", exc)
            except Exception:
                log.exception("relay failed, will retry")

    async def _publish(self, row: Any) -> None:  # an outbox row (Core)
        token = correlation_id.set(row.correlation_id)
        try:
            await self.bus.publish(
                row.routing_key, row.payload, message_id=str(row.notification_id)
            )
        finally:
            correlation_id.reset(token)

    async def flush(self) -> int:
        """Publish one batch; returns how many rows it published."""
        outbox = cast(Table, OutboxMessage.__table__)
        # Core rows, not ORM objects: nothing here needs the identity map (docs/performance.md).
        async with self.db.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(outbox)
                    .where(outbox.c.available_at <= utcnow())
                    .order_by(outbox.c.available_at, outbox.c.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            queued_at = utcnow()
            # Confirms are awaited concurrently: one round trip for the batch, not per row.
            await asyncio.gather(*(self._publish(row) for row in rows))
            await conn.execute(delete(outbox).where(outbox.c.id.in_([r.id for r in rows])))
            # A scheduled notification is on its way now (only those can be: a row made
            # available later than it was written).
            scheduled = [r.notification_id for r in rows if r.available_at > r.created_at]
            if scheduled:
                notifications = cast(Table, Notification.__table__)
                await conn.execute(
                    update(notifications)
                    .where(notifications.c.id.in_(scheduled))
                    .where(notifications.c.status == Status.SCHEDULED)
                    .values(status=Status.PENDING, updated_at=queued_at)
                )
            await conn.execute(
                insert(cast(Table, NotificationEvent.__table__)),
                [
                    {
                        "notification_id": r.notification_id,
                        "status": Status.QUEUED,
                        "detail": f"published to {r.routing_key}",
                        "created_at": queued_at,
                    }
                    for r in rows
                ],
            )
        for r in rows:
            child(STAGE_SECONDS, r.routing_key.split(".")[0], Status.QUEUED).observe(
                max(0.0, (queued_at - r.created_at).total_seconds())
            )
        return len(rows)
