"""The reconciler: a notification left ``pending`` with no report for a long while is sent
round again, so that nothing stays pending for good (a lost message, a lost report).

It does not fight the normal path: it only takes notifications whose status has not moved
for ``after_s`` (15 min by default, well past the longest silence of a normal life: the
longest delay tier, 512 s, plus a lease) and that have no message waiting in the outbox (the
relay's work). It requeues them through the outbox, and the worker's claim settles them from
its delivery record: one already sent is reported delivered again and not sent, one that
failed is reported failed again, one the worker never saw is delivered. Each requeue is in the
history; after ``max_requeues`` the notification fails with the reason. Several gateways
share the work: rows are taken ``FOR UPDATE SKIP LOCKED`` and their clock reset in the same
transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any

from sqlalchemy import func, select

from tidings.core.db import Database, utcnow
from tidings.core.errors import NotFound
from tidings.core.status import Status
from tidings.core.tasks import Periodic
from tidings.gateway.lookups import UserDirectory
from tidings.gateway.models import (
    Notification,
    NotificationEvent,
    OutboxMessage,
    message_for,
    requeue_rows,
)
from tidings.gateway.relay import OutboxRelay

log = logging.getLogger(__name__)

# How the reconciler's history entries begin (and how it counts its own requeues).
MARK = "reconciler:"
UNSETTLED = (Status.PENDING, Status.QUEUED)


class Reconciler:
    """Sweeps every ``every_s`` for notifications silent for ``after_s`` (module docstring)."""

    def __init__(
        self,
        db: Database,
        users: UserDirectory,
        relay: OutboxRelay,
        *,
        after_s: float,
        every_s: float,
        max_requeues: int,
        batch_size: int = 100,
    ) -> None:
        self.db = db
        self.users = users
        self.relay = relay
        self.after_s = after_s
        self.every_s = every_s
        self.max_requeues = max_requeues
        self.batch_size = batch_size
        # The first sweep one period after the start, as every later one.
        self._sweeps = Periodic("reconciler", self.sweep, every_s, first_wait=True)

    def start(self) -> None:
        self._sweeps.start()

    async def stop(self) -> None:
        await self._sweeps.stop()

    async def sweep(self) -> int:
        """One pass; returns how many notifications it settled or requeued.

        Users are looked up before the rows are locked (a slow users service holds no
        lock), the earlier requeues of all the rows counted in one query."""
        now = utcnow()
        cutoff = now - dt.timedelta(seconds=self.after_s)
        waiting = select(OutboxMessage.id).where(OutboxMessage.notification_id == Notification.id)
        due = (
            select(Notification.id, Notification.user_id)
            .where(Notification.status.in_(UNSETTLED), Notification.updated_at < cutoff)
            .where(~waiting.exists())
            .order_by(Notification.updated_at)
            .limit(self.batch_size)
        )
        async with self.db.sessions() as session:
            candidates = (await session.execute(due)).all()
        if not candidates:
            return 0
        user_ids = list({c.user_id for c in candidates})
        found = await asyncio.gather(*(self._user(u) for u in user_ids))
        users = dict(zip(user_ids, found, strict=True))
        # Locked now, and taken only if still due: another gateway may have done them since.
        query = (
            select(Notification)
            .where(Notification.id.in_([c.id for c in candidates]))
            .where(Notification.status.in_(UNSETTLED), Notification.updated_at < cutoff)
            .where(~waiting.exists())
            .order_by(Notification.updated_at)
            .with_for_update(skip_locked=True)
        )
        async with self.db.sessions() as session, session.begin():
            rows = (await session.scalars(query)).all()
            done = await self._requeues(session, [n.id for n in rows])
            for n in rows:
                self._one(session, n, now, done.get(n.id, 0), users[n.user_id])
        if rows:
            self.relay.wake()
            log.info("reconciler requeued or settled %d notification(s)", len(rows))
        return len(rows)

    async def _user(self, user_id: uuid.UUID) -> dict[str, Any] | None:
        try:
            return await self.users.get(user_id)
        except NotFound:
            return None

    @staticmethod
    async def _requeues(session: Any, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        """How often the reconciler has requeued each notification already."""
        if not ids:
            return {}
        counted = await session.execute(
            select(NotificationEvent.notification_id, func.count())
            .where(NotificationEvent.notification_id.in_(ids))
            .where(NotificationEvent.detail.startswith(MARK))
            .group_by(NotificationEvent.notification_id)
        )
        return {nid: int(count) for nid, count in counted.all()}

    def _one(
        self,
        session: Any,
        n: Notification,
        now: dt.datetime,
        done: int,
        user: dict[str, Any] | None,
    ) -> None:
        silent_s = (now - n.updated_at).total_seconds()
        n.updated_at = now
        if done >= self.max_requeues:
            reason = f"{MARK} no outcome after {done} requeues; {silent_s:.0f}s without a report"
            self._fail(session, n, reason, now)
            return
        if user is None:
            self._fail(session, n, f"{MARK} the user no longer exists", now)
            return
        detail = (
            f"{MARK} no report for {silent_s:.0f}s; requeued "
            f"({done + 1} of {self.max_requeues}); the worker's delivery record decides"
        )
        session.add_all(requeue_rows(n, message_for(n, user), detail, now))

    @staticmethod
    def _fail(session: Any, n: Notification, reason: str, now: dt.datetime) -> None:
        n.status = Status.FAILED
        n.error = reason
        session.add(
            NotificationEvent(
                notification_id=n.id,
                status=Status.FAILED,
                error=reason,
                detail=reason,
                created_at=now,
            )
        )
