"""The worker's database work: fan the captured events out to the endpoints that subscribe,
claim due messages (a lease: ``next_attempt_at`` moved forward), record each attempt.

Every step is one transaction: an outbox row is deleted in the transaction that writes its
messages (a worker killed in between leaves it for the next), a claimed message stays
pending with its lease, so a worker killed mid-request leaves it to be sent again once the
lease ends (the duplicate window, docs/webhooks.md)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update

from tidings.core.bulk import insert_rows, update_rows
from tidings.core.db import Database, utcnow
from tidings.webhooks.attempts import Claimed, FannedOut, Room, Settled
from tidings.webhooks.events import body_of, event_key, notification_of, subscribes
from tidings.webhooks.models import (
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    WebhookOutbox,
)

T = TypeVar("T")
OUTBOX = cast(Table, WebhookOutbox.__table__)
MESSAGES = cast(Table, WebhookMessage.__table__)
ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
ATTEMPTS = cast(Table, WebhookAttempt.__table__)
# How stale an endpoint's last_success_at may get before a success writes it again.
SUCCESS_EVERY_S = 10.0


# Rows in one multi-row statement: well under the drivers' bound on parameters (32,767
# for asyncpg, SQLite's default) at the widest table's 9 columns.
ROWS_PER_STATEMENT = 1000


def _chunks(rows: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def _outcome(s: Settled, now: dt.datetime) -> dict[str, Any]:
    """The message's columns after the attempt ``s``, with its id."""
    done = s.state == "delivered"
    o = s.outcome
    return {
        "id": s.message.id,
        "state": s.state,
        "attempts": s.message.attempts + 1,
        "next_attempt_at": now if done else s.next_at or now,
        "last_status": o.status_code,
        "last_error": None if done else o.error,
        "delivered_at": now if done else None,
        "delivered_duration_ms": o.duration_ms if done else None,
        "delivered_excerpt": o.excerpt if done else None,
    }


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def fan_out(self, batch_size: int, room: Room | None = None) -> FannedOut:
        """Up to ``batch_size`` captured events into messages, one per subscribed endpoint.
        With ``room``, the messages it has room for are claimed as they are written (their
        lease in ``next_attempt_at`` from the start, as :meth:`claim` would set it): the
        worker sends them at once, with no claim statement and no second write of the row
        before the outcome; the rest are written due now, for a claim."""
        async with self.db.engine.begin() as conn:
            taken = select(OUTBOX.c.id).order_by(OUTBOX.c.id).limit(batch_size)
            if self.db.is_postgres:
                taken = taken.with_for_update(skip_locked=True)
            rows = (
                await conn.execute(
                    delete(OUTBOX).where(OUTBOX.c.id.in_(taken.scalar_subquery())).returning(OUTBOX)
                )
            ).all()
            if not rows:
                return FannedOut(0, 0, [], {})
            endpoints = {
                e.id: e
                for e in await conn.execute(
                    select(ENDPOINTS).where(ENDPOINTS.c.disabled_at.is_(None))
                )
            }
            now = utcnow()
            messages = [
                {
                    "endpoint_id": e.id,
                    "webhook_id": new_webhook_id(),
                    "event_key": event_key(row),
                    "event_type": row.event_type,
                    "notification_id": notification_of(row),
                    "payload": body_of(row),
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for row in rows
                for e in endpoints.values()
                if (e.owner == "admin" or e.owner == row.owner)
                and subscribes(e.events, row.event_type)
            ]
            leased = room.take(messages, now) if room is not None else {}
            # The rows as parameters (executemany), not in .values(): the statement is then
            # the same every time and compiled once (SQLAlchemy's cache); a multi-row
            # .values() was compiled anew at every fan-out, the worker's largest own cost.
            adding = (
                self.db.insert(MESSAGES)
                .on_conflict_do_nothing(
                    index_elements=[MESSAGES.c.endpoint_id, MESSAGES.c.event_key]
                )
                .returning(MESSAGES.c.id, MESSAGES.c.webhook_id)
            )
            made: dict[str, int] = {}
            for chunk in _chunks(messages, ROWS_PER_STATEMENT):
                # An event fanned out before (a repeat) makes no row and returns none.
                made.update({r.webhook_id: r.id for r in await conn.execute(adding, chunk)})
        claimed = [
            Claimed(
                made[m["webhook_id"]],
                m["endpoint_id"],
                m["webhook_id"],
                m["payload"],
                0,
                now,
                lease_until,
            )
            for m in messages
            if (lease_until := leased.get(m["webhook_id"])) is not None and m["webhook_id"] in made
        ]
        return FannedOut(len(rows), len(made), claimed, endpoints)

    async def claim(
        self, room: dict[uuid.UUID, int], default_room: int, limit: int, lease_s: float
    ) -> list[Claimed]:
        """Due messages of enabled endpoints, at most ``room[endpoint]`` (``default_room``
        for one not named; 0 skips it) per endpoint, ``limit`` in all, leased for
        ``lease_s``. A message another worker claimed first is not returned."""
        now = utcnow()
        lease_until = now + dt.timedelta(seconds=lease_s)
        excluded = [e for e, r in room.items() if r <= 0]
        ranked = (
            select(
                MESSAGES.c.id,
                MESSAGES.c.endpoint_id,
                func.row_number()
                .over(
                    partition_by=MESSAGES.c.endpoint_id,
                    order_by=(MESSAGES.c.next_attempt_at, MESSAGES.c.id),
                )
                .label("rank"),
            )
            .join(ENDPOINTS, ENDPOINTS.c.id == MESSAGES.c.endpoint_id)
            .where(MESSAGES.c.state == "pending", MESSAGES.c.next_attempt_at <= now)
            .where(ENDPOINTS.c.disabled_at.is_(None))
        )
        if excluded:
            ranked = ranked.where(MESSAGES.c.endpoint_id.not_in(excluded))
        sub = ranked.subquery()
        async with self.db.engine.begin() as conn:
            candidates = (
                await conn.execute(
                    select(sub.c.id, sub.c.endpoint_id, sub.c.rank)
                    .where(sub.c.rank <= default_room)
                    .order_by(sub.c.rank, sub.c.id)
                    .limit(limit)
                )
            ).all()
            picked = [c.id for c in candidates if c.rank <= room.get(c.endpoint_id, default_room)]
            if not picked:
                return []
            claimed = (
                await conn.execute(
                    update(MESSAGES)
                    .where(MESSAGES.c.id.in_(picked))
                    .where(MESSAGES.c.state == "pending", MESSAGES.c.next_attempt_at <= now)
                    .values(next_attempt_at=lease_until)
                    .returning(
                        MESSAGES.c.id,
                        MESSAGES.c.endpoint_id,
                        MESSAGES.c.webhook_id,
                        MESSAGES.c.payload,
                        MESSAGES.c.attempts,
                        MESSAGES.c.created_at,
                    )
                )
            ).all()
        return [
            Claimed(
                row.id,
                row.endpoint_id,
                row.webhook_id,
                row.payload,
                row.attempts,
                row.created_at,
                lease_until,
            )
            for row in claimed
        ]

    async def endpoints(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(ENDPOINTS).where(ENDPOINTS.c.id.in_(ids)))).all()
        return {row.id: row for row in rows}

    async def record_many(self, items: Sequence[Settled]) -> list[dt.datetime | None]:
        """Many attempts' outcomes in one transaction: an attempt row for each that did not
        succeed (one statement; a success is written on its message, with its duration
        and excerpt: migration gateway 0014), every message's outcome in one statement
        (``core.bulk``), the endpoints' success and failure clocks (one update each). Returns,
        per item, since when its endpoint has been failing (None after a success)."""
        if not items:
            return []
        now = utcnow()
        attempts = [
            {
                "message_id": s.message.id,
                "endpoint_id": s.message.endpoint_id,
                "at": now,
                "status_code": s.outcome.status_code,
                "duration_ms": s.outcome.duration_ms,
                "error": s.outcome.error,
                "response_excerpt": s.outcome.excerpt,
            }
            for s in items
            if s.state != "delivered"
        ]
        last = {s.message.id: s for s in items}  # one outcome per message and statement
        outcomes = [_outcome(last[i], now) for i in sorted(last)]  # in id order (locks)
        succeeded = {s.message.endpoint_id for s in items if s.success}
        failing = {s.message.endpoint_id for s in items if not s.success} - succeeded
        since: dict[uuid.UUID, dt.datetime | None] = {}
        async with self.db.engine.begin() as conn:
            await insert_rows(conn, ATTEMPTS, attempts)
            await update_rows(conn, MESSAGES, "id", outcomes)
            if succeeded:
                # One row every success would update: written when it says something new
                # (a failure cleared) or is 10 s old, not at every event (a hot row).
                stale = now - dt.timedelta(seconds=SUCCESS_EVERY_S)
                await conn.execute(
                    update(ENDPOINTS)
                    .where(ENDPOINTS.c.id.in_(succeeded))
                    .where(
                        ENDPOINTS.c.failing_since.is_not(None)
                        | ENDPOINTS.c.last_success_at.is_(None)
                        | (ENDPOINTS.c.last_success_at < stale)
                    )
                    .values(last_success_at=now, failing_since=None)
                )
            if failing:
                await conn.execute(
                    update(ENDPOINTS)
                    .where(ENDPOINTS.c.id.in_(failing), ENDPOINTS.c.failing_since.is_(None))
                    .values(failing_since=now)
                )
                rows = await conn.execute(
                    select(ENDPOINTS.c.id, ENDPOINTS.c.failing_since).where(
                        ENDPOINTS.c.id.in_(failing)
                    )
                )
                since = {row.id: row.failing_since for row in rows}
        return [since.get(s.message.endpoint_id) if not s.success else None for s in items]

    async def release_many(self, items: Sequence[tuple[int, dt.datetime, dt.datetime]]) -> None:
        """Back to waiting until ``at``, no attempt spent (the endpoint's breaker is open, or
        the lease would end before the request could): ``(message id, its lease_until, at)``
        each, one statement executed for each; a message whose lease is no longer ours (it
        ran out and another worker claimed it) is left alone."""
        if not items:
            return
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(MESSAGES)
                .where(
                    MESSAGES.c.id == bindparam("m_id"),
                    MESSAGES.c.state == "pending",
                    MESSAGES.c.next_attempt_at == bindparam("m_lease"),
                )
                .values(next_attempt_at=bindparam("m_at")),
                [{"m_id": i, "m_lease": lease, "m_at": at} for i, lease, at in items],
            )

    async def purge_delivered(self, before: dt.datetime, limit: int) -> int:
        """Delete up to ``limit`` messages delivered before ``before``, with their attempts
        (retention); returns how many messages. A delivered message's ``next_attempt_at`` is
        its delivery time, so the due index (state, next_attempt_at) finds them."""
        taken = (
            select(MESSAGES.c.id)
            .where(
                MESSAGES.c.state == "delivered",
                MESSAGES.c.next_attempt_at < before,
                MESSAGES.c.delivered_at < before,
            )
            .order_by(MESSAGES.c.next_attempt_at)
            .limit(limit)
        )
        if self.db.is_postgres:
            taken = taken.with_for_update(skip_locked=True)
        async with self.db.engine.begin() as conn:
            ids = list((await conn.scalars(taken)).all())
            if not ids:
                return 0
            await conn.execute(delete(ATTEMPTS).where(ATTEMPTS.c.message_id.in_(ids)))
            await conn.execute(delete(MESSAGES).where(MESSAGES.c.id.in_(ids)))
        return len(ids)

    async def disable(self, endpoint_id: uuid.UUID, reason: str) -> bool:
        """Disable the endpoint and capture an ``endpoint.disabled`` event for its owner's
        other endpoints (and the admin's); False if it was already disabled."""
        now = utcnow()
        async with self.db.engine.begin() as conn:
            row = (
                await conn.execute(
                    update(ENDPOINTS)
                    .where(ENDPOINTS.c.id == endpoint_id, ENDPOINTS.c.disabled_at.is_(None))
                    .values(disabled_at=now, disabled_reason=reason, updated_at=now)
                    .returning(ENDPOINTS.c.owner, ENDPOINTS.c.url)
                )
            ).first()
            if row is None:
                return False
            await conn.execute(
                insert(OUTBOX),
                {
                    "event_type": "endpoint.disabled",
                    "owner": row.owner,
                    "extra": {"endpoint_id": str(endpoint_id), "url": row.url, "reason": reason},
                    "created_at": now,
                },
            )
        return True
