"""The broadcasts' fan-out, in the background of every gateway replica.

A replica claims a running broadcast whose lease has run out (``FOR UPDATE SKIP LOCKED``; the
lease on the database's clock), then goes through the topic's subscribers a page at a time
from the broadcast's cursor (keyset on the subscribers' primary key, never OFFSET): the
page's users in one call to the users service, its notifications through the accept path
(``BulkAcceptance``: preferences, suppressions and the per-recipient limit as for a single
send, de-duplicated on request_id per owner), then the cursor, the counts and the lease move
on in one statement that holds only while the lease is its own and the broadcast runs. A
process killed mid-page leaves the cursor before that page: whoever takes the broadcast next
makes the page again, and its request ids make nothing twice. Memory: one page.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from tidings.core.db import Database, unavailable, utcnow
from tidings.core.errors import DependencyUnavailable, RetryAfter
from tidings.core.outbound import BROADCAST_KEY
from tidings.core.tasks import cancel_and_wait
from tidings.core.web import ServiceClient
from tidings.gateway.broadcasts import (
    CANCELLED,
    FINISHED,
    RUNNING,
    Broadcasts,
    db_now,
    lease_free,
    request_id_for,
)
from tidings.gateway.bulk_accept import LOOKUP_BATCH, BulkAcceptance
from tidings.gateway.models import Broadcast, TopicSubscriber
from tidings.gateway.schemas import NotificationCreate
from tidings.gateway.topics import Topics

log = logging.getLogger(__name__)

BACKLOG_WAIT_S = 0.05
PAGE_RETRY_S = 1.0


def transient(exc: BaseException) -> bool:
    """An outage or a rate limit: worth the page again, never a recipient refused."""
    return isinstance(exc, (DependencyUnavailable, RetryAfter)) or unavailable(exc) is not None


class Fanout:
    def __init__(
        self,
        db: Database,
        topics: Topics,
        broadcasts: Broadcasts,
        acceptance: BulkAcceptance,
        users: ServiceClient,
        *,
        page_size: int,
        lease_s: float,
        poll_s: float,
        backlog: Callable[[], int] = lambda: 0,
    ) -> None:
        self._db = db
        self._topics = topics
        self._broadcasts = broadcasts
        self._acceptance = acceptance
        self._users = users
        self.page_size = page_size
        self.lease_s = lease_s
        self.poll_s = poll_s
        self._backlog = backlog
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="broadcast-fanout")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                claimed = await self.claim()
                if claimed is not None:
                    await self.run(claimed)
                    continue
            except Exception:
                log.exception("broadcast fan-out failed, will try again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    def _lease_end(self) -> Any:
        return db_now(self._db) + dt.timedelta(seconds=self.lease_s)

    async def claim(self) -> Broadcast | None:
        """A running broadcast nobody holds (its lease run out, or never taken), now ours."""
        async with self._db.sessions() as session, session.begin():
            found = await session.scalar(
                select(Broadcast)
                .where(
                    # A cancelled one not yet finished: its fan-out died before it could
                    # withdraw the page it was making, and set finished_at.
                    or_(
                        Broadcast.status == RUNNING,
                        and_(Broadcast.status == CANCELLED, Broadcast.finished_at.is_(None)),
                    ),
                    lease_free(self._db),
                )
                .order_by(Broadcast.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if found is None:
                return None
            found.lease_owner = self.name
            found.lease_until = self._lease_end()
            if found.recipients is None:
                found.recipients = int(
                    await session.scalar(
                        select(func.count()).where(TopicSubscriber.topic_id == found.topic_id)
                    )
                    or 0
                )
            await session.flush()
            session.expunge(found)
        log.info("broadcast %s taken from %s", found.id, found.cursor or "the start")
        return found

    async def run(self, b: Broadcast) -> None:
        cursor = b.cursor
        while True:
            try:
                # Cancelled while this replica waited (for the relay, say): no page more.
                if (await self._broadcasts.row(b.id, None)).status == CANCELLED:
                    await self._stop_cancelled(b, 0, 0)
                    return
                page = [u for u, _ in await self._topics.page(b.topic_id, cursor, self.page_size)]
                made, refused = await self._accept_page(b, page) if page else (0, 0)
            except Exception as exc:
                if not transient(exc):
                    raise
                # An outage (a timeout, an open breaker, a rate limit): the page again in a
                # moment, from the same cursor (what it made already is found, not made
                # twice); past the lease another replica may take over, and this one stops
                # at its next cursor update.
                log.warning("broadcast %s: page from %s again: %r", b.id, cursor, exc)
                await asyncio.sleep(PAGE_RETRY_S)
                continue
            done = len(page) < self.page_size
            moved = await self._advance(b, page[-1] if page else cursor, made, refused, done)
            if not moved:
                current = await self._broadcasts.row(b.id, None)
                if current.status == CANCELLED:
                    await self._stop_cancelled(b, made, refused)
                else:
                    log.warning("broadcast %s: lease lost to %s", b.id, current.lease_owner)
                return
            if done:
                log.info("broadcast %s: fan-out finished", b.id)
                return
            cursor = page[-1]
            # Made no faster than the bulk relay publishes: what it holds stays under a page,
            # so the broadcast never floods the gateway it shares with transactional sends.
            while self._backlog() > self.page_size:  # noqa: ASYNC110 - the relay has no event for it
                await asyncio.sleep(BACKLOG_WAIT_S)

    async def _accept_page(self, b: Broadcast, page: list[uuid.UUID]) -> tuple[int, int]:
        users: dict[uuid.UUID, dict[str, Any]] = {}
        for start in range(0, len(page), LOOKUP_BATCH):
            ids = [str(u) for u in page[start : start + LOOKUP_BATCH]]
            found = await self._users.post("/api/v1/users/lookup/", {"user_ids": ids})
            users.update({uuid.UUID(u["user_id"]): u for u in found})
        metadata = {**(b.extra or {}), BROADCAST_KEY: str(b.id)}
        bodies = [
            NotificationCreate.model_validate(
                {
                    "notification_type": b.notification_type,
                    "user_id": user_id,
                    "template_code": b.template_code,
                    "variables": b.variables,
                    "request_id": request_id_for(b.id, user_id),
                    "priority": b.priority,
                    "metadata": metadata,
                    "send_at": b.send_at,
                }
            )
            for user_id in page
        ]
        outcomes = await self._acceptance.accept_page(bodies, users, b.owner)
        errors = [o.error for o in outcomes if o.error is not None]
        for error in errors:
            if transient(error):  # not this recipient's fault: the page is made again
                raise error
        made = sum(1 for o in outcomes if o.notification is not None)
        if errors:
            log.info(
                "broadcast %s: %d of a page of %d refused, e.g. %s",
                b.id,
                len(errors),
                len(outcomes),
                errors[0].message,
            )
        return made, len(outcomes) - made

    async def _stop_cancelled(self, b: Broadcast, made: int, refused: int) -> None:
        """The page written while the cancel ran (``made``, ``refused``) counted first (so
        ``created`` never falls behind the statuses), then withdrawn with whatever else of
        the broadcast is still in the outbox; then finished, and let go."""
        if made or refused:
            async with self._db.engine.begin() as conn:
                await conn.execute(
                    update(Broadcast)
                    .where(Broadcast.id == b.id)
                    .values(created=Broadcast.created + made, refused=Broadcast.refused + refused)
                )
        await self._broadcasts.withdraw(b)
        async with self._db.engine.begin() as conn:
            await conn.execute(
                update(Broadcast)
                .where(Broadcast.id == b.id)
                .values(finished_at=utcnow(), lease_until=None, updated_at=utcnow())
            )
        log.info("broadcast %s cancelled: fan-out stopped", b.id)

    async def _advance(
        self, b: Broadcast, cursor: uuid.UUID | None, made: int, refused: int, done: bool
    ) -> bool:
        """The page is made: cursor, counts and lease on, if the lease is still ours and the
        broadcast still runs (else False: nothing moved)."""
        values: dict[str, Any] = {
            "cursor": cursor,
            "created": Broadcast.created + made,
            "refused": Broadcast.refused + refused,
            "lease_until": self._lease_end(),
            "updated_at": utcnow(),
        }
        if done:
            values |= {"status": FINISHED, "finished_at": utcnow(), "lease_until": None}
        async with self._db.engine.begin() as conn:
            moved = await conn.execute(
                update(Broadcast)
                .where(
                    Broadcast.id == b.id,
                    Broadcast.status == RUNNING,
                    Broadcast.lease_owner == self.name,
                )
                .values(**values)
            )
        return bool(moved.rowcount)
