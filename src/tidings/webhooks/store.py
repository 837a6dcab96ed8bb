"""The worker's database work: fan the captured events out to the endpoints that subscribe,
claim due messages (a lease: ``next_attempt_at`` moved forward), record each attempt.

Every step is one transaction: an outbox row is deleted in the transaction that writes its
messages (a worker killed in between leaves it for the next), a claimed message stays
pending with its lease, so a worker killed mid-request leaves it to be sent again once the
lease ends (the duplicate window, docs/webhooks.md)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update

from tidings.core.db import Database, utcnow
from tidings.webhooks.events import body_of, event_key, subscribes
from tidings.webhooks.models import (
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    WebhookOutbox,
)

OUTBOX = cast(Table, WebhookOutbox.__table__)
MESSAGES = cast(Table, WebhookMessage.__table__)
ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
ATTEMPTS = cast(Table, WebhookAttempt.__table__)
# How stale an endpoint's last_success_at may get before a success writes it again.
SUCCESS_EVERY_S = 10.0


@dataclass(frozen=True)
class Claimed:
    """A message claimed for one attempt, with what its endpoint needs to send it."""

    id: int
    endpoint_id: uuid.UUID
    webhook_id: str
    payload: bytes
    attempts: int
    created_at: dt.datetime


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    status_code: int | None
    duration_ms: float
    error: str | None
    excerpt: str | None


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def fan_out(self, batch_size: int) -> int:
        """Up to ``batch_size`` captured events into messages; returns how many events."""
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
                return 0
            endpoints = (
                await conn.execute(
                    select(ENDPOINTS.c.id, ENDPOINTS.c.owner, ENDPOINTS.c.events).where(
                        ENDPOINTS.c.disabled_at.is_(None)
                    )
                )
            ).all()
            now = utcnow()
            messages = [
                {
                    "endpoint_id": e.id,
                    "webhook_id": new_webhook_id(),
                    "event_key": event_key(row),
                    "event_type": row.event_type,
                    "payload": body_of(row),
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for row in rows
                for e in endpoints
                if (e.owner == "admin" or e.owner == row.owner)
                and subscribes(e.events, row.event_type)
            ]
            if messages:
                await conn.execute(
                    self.db.insert(MESSAGES).on_conflict_do_nothing(
                        index_elements=[MESSAGES.c.endpoint_id, MESSAGES.c.event_key]
                    ),
                    messages,
                )
        return len(rows)

    async def claim(
        self, room: dict[uuid.UUID, int], default_room: int, limit: int, lease_s: float
    ) -> list[Claimed]:
        """Due messages of enabled endpoints, at most ``room[endpoint]`` (``default_room``
        for one not named; 0 skips it) per endpoint, ``limit`` in all, leased for
        ``lease_s``. A message another worker claimed first is not returned."""
        now = utcnow()
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
                    .values(next_attempt_at=now + dt.timedelta(seconds=lease_s))
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
        return [Claimed(*row) for row in claimed]

    async def endpoints(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(ENDPOINTS).where(ENDPOINTS.c.id.in_(ids)))).all()
        return {row.id: row for row in rows}

    async def release(self, message_id: int, at: dt.datetime) -> None:
        """Back to waiting, no attempt spent (the endpoint's breaker is open)."""
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(MESSAGES).where(MESSAGES.c.id == message_id).values(next_attempt_at=at)
            )

    async def record(
        self,
        message: Claimed,
        outcome: Outcome,
        *,
        state: str,
        next_at: dt.datetime | None,
        success: bool,
    ) -> dt.datetime | None:
        """The attempt, the message's new state, and the endpoint's success clock; returns
        since when the endpoint has been failing (None after a success)."""
        now = utcnow()
        async with self.db.engine.begin() as conn:
            await conn.execute(
                insert(ATTEMPTS),
                {
                    "message_id": message.id,
                    "endpoint_id": message.endpoint_id,
                    "at": now,
                    "status_code": outcome.status_code,
                    "duration_ms": outcome.duration_ms,
                    "error": outcome.error,
                    "response_excerpt": outcome.excerpt,
                },
            )
            await conn.execute(
                update(MESSAGES)
                .where(MESSAGES.c.id == message.id)
                .values(
                    state=state,
                    attempts=message.attempts + 1,
                    next_attempt_at=next_at or now,
                    last_status=outcome.status_code,
                    last_error=outcome.error,
                    delivered_at=now if success else None,
                )
            )
            where = ENDPOINTS.c.id == message.endpoint_id
            if success:
                # One row every success would update: written when it says something new
                # (a failure cleared) or is 10 s old, not at every event (a hot row).
                stale = now - dt.timedelta(seconds=SUCCESS_EVERY_S)
                await conn.execute(
                    update(ENDPOINTS)
                    .where(where)
                    .where(
                        ENDPOINTS.c.failing_since.is_not(None)
                        | ENDPOINTS.c.last_success_at.is_(None)
                        | (ENDPOINTS.c.last_success_at < stale)
                    )
                    .values(last_success_at=now, failing_since=None)
                )
                return None
            await conn.execute(
                update(ENDPOINTS)
                .where(where, ENDPOINTS.c.failing_since.is_(None))
                .values(failing_since=now)
            )
            since: dt.datetime | None = await conn.scalar(
                select(ENDPOINTS.c.failing_since).where(where)
            )
        return since

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
