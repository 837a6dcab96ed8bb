"""The outbox relay: publishes what the gateway committed, then deletes it.

The rows this process's accept transaction wrote are handed over (``hand``) once committed
and published from memory, without being read back: their transaction deletes them first,
which locks them against any other relay, and commits after the broker's confirms. A slow
poll (``flush``) publishes what is left: rows other replicas or an earlier run left behind,
those whose publish failed, scheduled ones when their time comes, and whatever ``wake()`` is
called for. Poll batches are claimed with ``FOR UPDATE SKIP LOCKED``, so relays of several
replicas share the work. A crash between commit and publish loses nothing (the row is in the
outbox until the poll takes it); one between the broker's confirm and the delete publishes a
row twice (the workers de-duplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.core.bulk import insert_rows
from tidings.core.bus import Bus, batch_message, batchable
from tidings.core.db import Database, utcnow
from tidings.core.errors import DependencyUnavailable
from tidings.core.logs import correlation_id
from tidings.core.metrics import STAGE_SECONDS, child
from tidings.core.status import Status
from tidings.core.tasks import cancel_and_wait
from tidings.core.topology import WORK_ROUTES
from tidings.gateway.models import Notification, NotificationEvent, OutboxMessage

log = logging.getLogger(__name__)

# Handed rows held at most, in batches: past that (a broker away for long, say) new rows are
# left to the poll, which finds them in the outbox, instead of growing the process's memory.
HANDED_MAX_BATCHES = 50


@dataclass(frozen=True)
class Written:
    """An outbox row as the accept transaction wrote it (its columns)."""

    id: int
    notification_id: uuid.UUID
    routing_key: str
    payload: bytes
    correlation_id: str
    created_at: dt.datetime
    available_at: dt.datetime


class OutboxRelay:
    """Publishes the outbox (module docstring); ``flush`` is one batch of the poll."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        batch_size: int,
        poll_s: float,
        routes: Collection[str] = (),
        bulk: bool = False,
        work_batch: int = 1,
    ) -> None:
        """``routes`` and ``bulk``: the poll's lane. The broadcasts' relay (``bulk``) polls
        the rows routed to ``routes`` and the accept path's relay every other row, so that
        neither polls (and locks) the rows the other is handed (gateway.app)."""
        self.db = db
        self.work_batch = work_batch
        self._routes = tuple(routes)
        self._bulk = bulk
        self.bus = bus
        self.batch_size = batch_size
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._poll_now = True  # an earlier run's rows first
        self._handed: list[Written] = []
        self._task: asyncio.Task[None] | None = None
        # Now, for scheduled rows (tests set it: a row held for the night is published
        # when the clock says so, without waiting for the night).
        self.clock: Callable[[], dt.datetime] = utcnow

    def wake(self) -> None:
        """Poll the outbox now (rows written elsewhere than the accept path)."""
        self._poll_now = True
        self._wake.set()

    def hand(self, rows: Sequence[Written]) -> None:
        """Rows just committed by this process, to publish without reading them back (up to
        HANDED_MAX_BATCHES batches held; the poll publishes the others)."""
        room = self.batch_size * HANDED_MAX_BATCHES - len(self._handed)
        self._handed.extend(rows[: max(0, room)])
        self._wake.set()

    @property
    def held(self) -> int:
        """Handed rows not yet published."""
        return len(self._handed)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        next_poll = time.monotonic()
        while True:
            # The poll keeps its pace under load too: handed rows wake the relay, and the
            # poll is still due every poll_s (for rows whose publish failed).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_poll - time.monotonic()))
            self._wake.clear()
            try:
                while self._handed:
                    batch = self._handed[: self.batch_size]
                    del self._handed[: self.batch_size]
                    await self.publish_written(batch)
                if self._poll_now or time.monotonic() >= next_poll:
                    self._poll_now = False
                    next_poll = time.monotonic() + self.poll_s
                    while await self.flush() == self.batch_size:
                        pass
            except (DependencyUnavailable, OSError) as exc:
                log.warning("relay could not publish, will retry: %s", exc)
            except Exception:
                log.exception("relay failed, will retry")

    async def _publish(self, rows: Sequence[Any]) -> None:  # outbox rows (Core) or Written
        """Rows of one route as one message: alone as it is, several as a batch that the
        worker's consumer takes apart (core.bus.batch_message)."""
        first = rows[0]
        token = correlation_id.set(first.correlation_id)
        try:
            if len(rows) == 1:
                body, headers = first.payload, None
            else:
                body, headers = batch_message(
                    [r.payload for r in rows],
                    [str(r.notification_id) for r in rows],
                    [r.correlation_id for r in rows],
                )
            await self.bus.publish(
                first.routing_key, body, message_id=str(first.notification_id), headers=headers
            )
        finally:
            correlation_id.reset(token)

    def _messages(self, rows: Sequence[Any]) -> list[list[Any]]:
        """``rows`` as messages: up to ``work_batch`` rows of one worker's queue together (in
        their order), every other row alone."""
        messages: list[list[Any]] = []
        open_: dict[str, list[Any]] = {}
        for row in rows:
            if row.routing_key not in WORK_ROUTES or not batchable(row.payload):
                messages.append([row])
                continue
            group = open_.get(row.routing_key)
            if group is None or len(group) >= self.work_batch:
                group = open_[row.routing_key] = []
                messages.append(group)
            group.append(row)
        return messages

    async def publish_written(self, rows: Sequence[Written]) -> int:
        """Publish rows handed over by the accept path, those still in the outbox: deleted
        first, in the transaction that commits once they are confirmed (the delete's lock
        keeps another relay's poll off them; a failure rolls it back, for the poll)."""
        outbox = cast(Table, OutboxMessage.__table__)
        async with self.db.engine.begin() as conn:
            # SKIP LOCKED: a row another relay's poll holds is being published by it. Waiting
            # for that lock (the poll holds it while its batch is confirmed) went past the
            # statement timeout under load, which counts as the database being away and
            # opened the gateway's database breaker (503s; docs/performance.md).
            free = (
                select(outbox.c.id)
                .where(outbox.c.id.in_([r.id for r in rows]))
                .with_for_update(skip_locked=True)
            )
            taken = set(
                (
                    await conn.execute(
                        delete(outbox).where(outbox.c.id.in_(free)).returning(outbox.c.id)
                    )
                ).scalars()
            )
            mine = [r for r in rows if r.id in taken]  # another relay's poll took the others
            if not mine:
                return 0
            queued_at = await self._published(conn, mine)
        _observe(mine, queued_at)
        return len(mine)

    def _lane(self, outbox: Table) -> Any:
        """The rows this relay's poll takes (``__init__``)."""
        if not self._routes:
            return true()
        inside = outbox.c.routing_key.in_(self._routes)
        return inside if self._bulk else ~inside

    async def flush(self) -> int:
        """Publish one batch of the poll; returns how many rows it published."""
        outbox = cast(Table, OutboxMessage.__table__)
        # Core rows, not ORM objects: nothing here needs the identity map (docs/performance.md).
        async with self.db.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(outbox)
                    .where(outbox.c.available_at <= self.clock())
                    .where(self._lane(outbox))
                    .order_by(outbox.c.available_at, outbox.c.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            queued_at = await self._published(conn, rows)
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
        _observe(rows, queued_at)
        return len(rows)

    async def _published(self, conn: AsyncConnection, rows: Sequence[Any]) -> dt.datetime:
        """Publish ``rows`` (up to ``work_batch`` of a worker's queue in one message; the
        messages' confirms awaited concurrently: one round trip for the batch, not one per
        message) and write their ``queued`` history entries; returns when."""
        queued_at = utcnow()
        await asyncio.gather(*(self._publish(message) for message in self._messages(rows)))
        # In the notifications' id order: each history row's foreign key locks its
        # notification (KEY SHARE), and the status consumer locks its batch FOR UPDATE in id
        # order; locks taken in another order deadlocked the two under load (and the second
        # one waited past the statement timeout, which opened the database breaker).
        rows = sorted(rows, key=lambda r: uuid.UUID(str(r.notification_id)))
        await insert_rows(
            conn,
            cast(Table, NotificationEvent.__table__),
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
        return queued_at


def _observe(rows: Sequence[Any], queued_at: dt.datetime) -> None:
    """Each committed row's time from acceptance to the queue."""
    for r in rows:
        child(STAGE_SECONDS, r.routing_key.split(".")[0], Status.QUEUED).observe(
            max(0.0, (queued_at - r.created_at).total_seconds())
        )
