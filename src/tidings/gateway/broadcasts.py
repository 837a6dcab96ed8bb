"""Broadcasts: one notification to every subscriber of a topic. Accepting one writes a row
(202 at once, whatever the topic's size); the fan-out (gateway.fanout) makes the
notifications in the background. Progress is read from the row's counters and the
notifications' statuses; a cancel stops the fan-out and withdraws what is not yet on its way
(docs/broadcasts.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
import uuid
from collections import Counter
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Table, case, delete, func, literal, or_, select, update

from tidings.core import jsons
from tidings.core.bulk import insert_rows
from tidings.core.db import Database, utcnow
from tidings.core.errors import Conflict, NotFound
from tidings.core.limits import JsonObject, Timestamp
from tidings.core.outbound import Outbound
from tidings.core.status import TERMINAL, Status
from tidings.gateway.models import (
    Broadcast,
    Notification,
    NotificationEvent,
    OutboxMessage,
    Topic,
)
from tidings.gateway.schemas import NotificationCreate, RequestId, TemplateCode, UserData
from tidings.gateway.topics import TopicKey, Topics

RUNNING, FINISHED, CANCELLED = "running", "finished", "cancelled"
# Where a notification ends: the terminal statuses, and cancelled.
ENDED = TERMINAL | {Status.CANCELLED}
# Notifications read per statement when counting a broadcast's statuses.
COUNT_CHUNK = 20_000
# Notifications withdrawn per transaction when a broadcast is cancelled.
WITHDRAW_BATCH = 2_000
# How long a broadcast's status counts are kept, at least and at most (``Broadcasts._counts``).
KEEP_COUNTS_MIN_S, KEEP_COUNTS_MAX_S = 1.0, 10.0


class BroadcastCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "topic_key": "product-news",
                    "notification_type": "email",
                    "template_code": "launch",
                    "variables": {"name": "there", "link": "https://example.com/launch"},
                    "request_id": "launch-2026-12",
                    "priority": 3,
                }
            ]
        },
    )
    topic_key: TopicKey
    notification_type: Literal["email", "push"]
    template_code: TemplateCode
    variables: UserData
    request_id: RequestId
    priority: Annotated[int, Field(ge=0, le=9)] = 5
    metadata: JsonObject | None = None
    send_at: Timestamp | None = None

    @model_validator(mode="after")
    def _each_is_a_notification(self) -> BroadcastCreate:
        """What each recipient's notification must pass (send_at at most a year ahead,
        say), checked once here: a broadcast the fan-out could not make is refused now."""
        anyone = uuid.UUID(int=0)
        fields = self.model_dump(exclude={"topic_key", "request_id"})
        NotificationCreate.model_validate(
            {**fields, "user_id": anyone, "request_id": request_id_for(anyone, anyone)}
        )
        return self


class BroadcastAccepted(BaseModel):
    broadcast_id: uuid.UUID
    request_id: str
    topic_key: str
    status: str
    created_at: dt.datetime


class BroadcastOut(BaseModel):
    """Progress: ``recipients`` (the topic's subscribers when the fan-out began),
    ``created`` (notifications made so far), ``refused`` (recipients none could be made for:
    an unknown user, say), then the notifications by where they stand; ``finished_at``: when
    nothing more will be made (a cancelled one: once its fan-out has stopped, and withdrawn
    the page it was making)."""

    broadcast_id: uuid.UUID
    request_id: str
    topic_key: str
    notification_type: str
    template_code: str
    status: Literal["running", "finished", "cancelled"]
    recipients: int | None
    created: int
    refused: int
    pending: int
    delivered: int
    failed: int
    skipped: int
    cancelled: int
    created_at: dt.datetime
    finished_at: dt.datetime | None


def request_id_for(broadcast_id: uuid.UUID, user_id: uuid.UUID) -> str:
    """The request_id of the broadcast's notification to one user: what makes a resumed or
    repeated page create nothing twice (accept's de-duplication per owner)."""
    return f"broadcast:{broadcast_id}:{user_id}"


def _request_range(broadcast_id: uuid.UUID) -> tuple[str, str]:
    """Every request_id of the broadcast lies in [low, high): a range of the (owner,
    request_id) index (byte order: ';' follows ':')."""
    return f"broadcast:{broadcast_id}:", f"broadcast:{broadcast_id};"


def _hash(body: BroadcastCreate) -> str:
    return hashlib.sha256(jsons.dumps(body.model_dump(mode="json"), sort_keys=True)).hexdigest()


def db_now(db: Database) -> Any:
    """The database's clock for leases (SQLite, embedded and alone: the process's)."""
    return func.now() if db.is_postgres else utcnow()


def lease_free(db: Database) -> Any:
    """No fan-out holds the broadcast: its lease never taken, let go, or run out."""
    return or_(Broadcast.lease_until.is_(None), Broadcast.lease_until < db_now(db))


def _of_broadcast(b: Broadcast) -> Any:
    low, high = _request_range(b.id)
    return (
        Notification.owner == b.owner,
        Notification.request_id >= low,
        Notification.request_id < high,
    )


class Broadcasts:
    def __init__(self, db: Database, topics: Topics, outbound: Outbound) -> None:
        self._db = db
        self._topics = topics
        self._outbound = outbound
        # Status counts by broadcast, kept a little while (``_counts``) with the row's state
        # they were counted at; bounded by the broadcasts read since the process started (a
        # few hundred bytes each).
        self._counted: dict[uuid.UUID, tuple[float, tuple[Any, ...], Counter[str]]] = {}
        self._counting: dict[uuid.UUID, asyncio.Lock] = {}

    async def create(self, body: BroadcastCreate, owner: str) -> tuple[BroadcastAccepted, bool]:
        """The broadcast's row (the fan-out takes it from there); whether it repeats an
        earlier request of ``owner`` with this request_id."""
        topic = await self._topics.get(body.topic_key, owner)
        digest = _hash(body)
        now = utcnow()
        row = {
            "id": uuid.uuid4(),
            "owner": owner,
            "request_id": body.request_id,
            "body_hash": digest,
            "topic_id": topic.id,
            "notification_type": body.notification_type,
            "template_code": body.template_code,
            "variables": body.variables.model_dump(mode="json"),
            "metadata": body.metadata,
            "priority": body.priority,
            "send_at": body.send_at,
            "status": RUNNING,
            "created": 0,
            "skipped": 0,
            "refused": 0,
            "cancelled": 0,
            "created_at": now,
            "updated_at": now,
        }
        table = cast(Table, Broadcast.__table__)
        async with self._db.engine.begin() as conn:
            made = await conn.execute(
                self._db.insert(table)
                .values(row)
                .on_conflict_do_nothing(index_elements=[table.c.owner, table.c.request_id])
            )
        if made.rowcount:
            accepted = BroadcastAccepted(
                broadcast_id=row["id"],
                request_id=body.request_id,
                topic_key=body.topic_key,
                status=RUNNING,
                created_at=now,
            )
            return accepted, False
        async with self._db.statements() as session:
            existing = await session.scalar(
                select(Broadcast).where(
                    Broadcast.owner == owner, Broadcast.request_id == body.request_id
                )
            )
        assert existing is not None
        if existing.body_hash != digest:
            raise Conflict(f"request_id {body.request_id!r} was already used with a different body")
        repeat = BroadcastAccepted(
            broadcast_id=existing.id,
            request_id=existing.request_id,
            topic_key=body.topic_key,
            status=existing.status,
            created_at=existing.created_at,
        )
        return repeat, True

    async def row(self, broadcast_id: uuid.UUID, owner: str | None) -> Broadcast:
        query = select(Broadcast).where(Broadcast.id == broadcast_id)
        if owner is not None:
            query = query.where(Broadcast.owner == owner)
        async with self._db.statements() as session:
            found = await session.scalar(query)
        if found is None:
            raise NotFound(f"broadcast {broadcast_id} not found")
        return found

    async def _count(self, b: Broadcast) -> Counter[str]:
        """The broadcast's notifications by status, read a chunk at a time along the (owner,
        request_id) index: each statement short, however many there are (one count of a
        100,000 took longer than the statement timeout, and opened the database breaker)."""
        counts: Counter[str] = Counter()
        low, high = _request_range(b.id)
        while True:
            async with self._db.statements() as session:
                rows = (
                    await session.execute(
                        select(Notification.request_id, Notification.status)
                        .where(
                            Notification.owner == b.owner,
                            Notification.request_id > low,
                            Notification.request_id < high,
                        )
                        .order_by(Notification.request_id)
                        .limit(COUNT_CHUNK)
                    )
                ).all()
            counts.update(r[1] for r in rows)
            if len(rows) < COUNT_CHUNK:
                return counts
            low = rows[-1][0]

    async def _counts(self, b: Broadcast) -> Counter[str]:
        """``_count``, kept a while (longer for a larger broadcast: three times as long as
        counting took, 1 to 10 s), one count at a time per broadcast. Kept only while the
        row stands as it was counted at: a page made or withdrawn since (by this replica or
        another) counts again, so ``created`` and the statuses never disagree by a page."""
        state = (b.status, b.created, b.refused, b.cancelled, b.finished_at)
        lock = self._counting.setdefault(b.id, asyncio.Lock())
        async with lock:
            kept = self._counted.get(b.id)
            if kept is not None and time.monotonic() < kept[0] and kept[1] == state:
                return kept[2]
            started = time.monotonic()
            counts = await self._count(b)
            took = time.monotonic() - started
            keep_s = min(KEEP_COUNTS_MAX_S, max(KEEP_COUNTS_MIN_S, 3 * took))
            self._counted[b.id] = (time.monotonic() + keep_s, state, counts)
            return counts

    async def progress(self, b: Broadcast) -> BroadcastOut:
        counts = await self._counts(b)
        async with self._db.statements() as session:
            topic_key = await session.scalar(select(Topic.key).where(Topic.id == b.topic_id))
        return BroadcastOut(
            broadcast_id=b.id,
            request_id=b.request_id,
            topic_key=topic_key or "",
            notification_type=b.notification_type,
            template_code=b.template_code,
            status=cast(Any, b.status),
            recipients=b.recipients,
            created=b.created,
            refused=b.refused,
            pending=sum(n for s, n in counts.items() if s not in ENDED),
            delivered=counts.get(Status.DELIVERED, 0),
            failed=counts.get(Status.FAILED, 0),
            skipped=counts.get(Status.SKIPPED, 0),
            cancelled=counts.get(Status.CANCELLED, 0),
            created_at=b.created_at,
            finished_at=b.finished_at,
        )

    async def get(self, broadcast_id: uuid.UUID, owner: str | None) -> BroadcastOut:
        return await self.progress(await self.row(broadcast_id, owner))

    async def listing(self, owner: str | None, limit: int = 100) -> list[BroadcastOut]:
        query = select(Broadcast).order_by(Broadcast.created_at.desc()).limit(limit)
        if owner is not None:
            query = query.where(Broadcast.owner == owner)
        async with self._db.statements() as session:
            rows = list(await session.scalars(query))
        return [await self.progress(b) for b in rows]

    async def cancel(self, broadcast_id: uuid.UUID, owner: str | None) -> BroadcastOut:
        """Stop the fan-out (it sees the status at its next page and makes nothing more),
        tell the workers (a queued notification of the broadcast is withdrawn before it is
        sent: skipped), and cancel the notifications still in the outbox."""
        b = await self.row(broadcast_id, owner)
        # Finished now, unless a fan-out holds the broadcast: it may be making a page, which
        # it withdraws when it sees the cancel, and then it sets ``finished_at`` (a reader
        # waits for that, not for ``pending`` to reach 0, which it may do for a moment
        # before that page's last slice is written).
        free = lease_free(self._db)
        now = literal(utcnow(), Broadcast.finished_at.type)
        async with self._db.engine.begin() as conn:
            await conn.execute(
                update(Broadcast)
                .where(Broadcast.id == b.id)
                .values(
                    status=CANCELLED,
                    updated_at=utcnow(),
                    finished_at=func.coalesce(Broadcast.finished_at, case((free, now), else_=None)),
                )
            )
        await self._outbound.mark_cancelled(str(b.id))
        await self.withdraw(b)
        self._counted.pop(b.id, None)
        return await self.get(broadcast_id, owner)

    async def withdraw(self, b: Broadcast) -> int:
        """Cancel the broadcast's notifications whose outbox row is still there and free
        (deleted first: a row a relay holds is on its way, and is left to the workers'
        check)."""
        withdrawn = 0
        outbox = cast(Table, OutboxMessage.__table__)
        while True:
            async with self._db.engine.begin() as conn:
                ours = (
                    select(outbox.c.id)
                    .join(Notification, Notification.id == outbox.c.notification_id)
                    .where(*_of_broadcast(b))
                    .limit(WITHDRAW_BATCH)
                    # A row a relay holds is being published: on its way (above). Waiting
                    # for its lock went past the statement timeout under load (a cancel
                    # answered 503, and the database breaker opened).
                    .with_for_update(of=outbox, skip_locked=True)
                )
                ids = list(
                    (
                        await conn.execute(
                            delete(outbox)
                            .where(outbox.c.id.in_(ours.scalar_subquery()))
                            .returning(outbox.c.notification_id)
                        )
                    ).scalars()
                )
                if not ids:
                    break
                now = utcnow()
                await conn.execute(
                    update(Notification)
                    .where(Notification.id.in_(ids))
                    .values(status=Status.CANCELLED, updated_at=now)
                )
                await insert_rows(
                    conn,
                    cast(Table, NotificationEvent.__table__),
                    [
                        {
                            "notification_id": i,
                            "status": Status.CANCELLED,
                            "detail": f"broadcast {b.id} cancelled",
                            "created_at": now,
                        }
                        for i in sorted(ids)
                    ],
                )
                await conn.execute(
                    update(Broadcast)
                    .where(Broadcast.id == b.id)
                    .values(cancelled=Broadcast.cancelled + len(ids))
                )
            withdrawn += len(ids)
        return withdrawn
