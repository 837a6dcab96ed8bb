"""Idempotent delivery: the delivery record each worker keeps per notification.

A message is sent only by the worker that *claims* its notification, in one statement:
the row is created, or moved from ``pending`` (or ``failed``, for a replay of a later round,
or ``sending`` whose lease has run out) to ``sending`` with a lease. ``sent`` is final. So a
redelivered or duplicated message never sends a delivered notification again, and a worker
that dies mid-send costs at most one duplicate, after its lease.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tidings.core.batching import Batcher
from tidings.core.db import Database, utcnow
from tidings.core.deliveries.models import Delivery

ClaimResult = Literal["claimed", "sent", "busy", "failed"]


@dataclass(frozen=True)
class Claim:
    result: ClaimResult
    attempts: int = 0
    # For "busy": how long until the holder's lease runs out.
    wait_s: float = 0.0
    reply: str | None = None


class DeliveryStore:
    def __init__(self, db: Database, lease_s: float) -> None:
        self.db = db
        self.lease_s = lease_s
        # Outcomes of concurrent sends are written together (core.batching).
        self._finishes: Batcher[tuple[str, dict[str, Any]], None] = Batcher(self._finish_many)
        self._claim: Any = None
        self._finish_statements: dict[tuple[str, ...], Any] = {}

    def _claim_statement(self) -> Any:
        """The claim, built once (its parameters bound per call): building and keying a
        statement per message cost more than running it (py-spy; docs/performance.md)."""
        table = cast(Table, Delivery.__table__)
        dialect = postgresql if self.db.is_postgres else sqlite
        insert = dialect.insert(table).values(
            notification_id=bindparam("nid", type_=table.c.notification_id.type),
            state="sending",
            round=bindparam("round", type_=table.c.round.type),
            attempts=1,
            lease_until=bindparam("lease", type_=table.c.lease_until.type),
            updated_at=bindparam("now", type_=table.c.updated_at.type),
        )
        new = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=[table.c.notification_id],
            set_={
                "state": "sending",
                "round": new.round,
                "attempts": table.c.attempts + 1,
                "lease_until": new.lease_until,
                "updated_at": new.updated_at,
            },
            where=or_(
                table.c.state == "pending",
                and_(table.c.state == "failed", table.c.round < new.round),
                and_(table.c.state == "sending", table.c.lease_until < new.updated_at),
            ),
        ).returning(table.c.attempts)

    async def claim(self, notification_id: str, round_: int = 0) -> Claim:
        now = utcnow()
        lease = now + dt.timedelta(seconds=self.lease_s)
        if self._claim is None:
            self._claim = self._claim_statement()
        params = {"nid": notification_id, "round": round_, "lease": lease, "now": now}
        # One statement, its own transaction; the read after it needs no lock.
        async with self.db.autocommit.connect() as conn:
            attempts = (await conn.execute(self._claim, params)).scalar_one_or_none()
        if attempts is not None:
            return Claim("claimed", attempts=attempts)
        row = await self.get(notification_id)
        assert row is not None
        if row.state == "sent":
            return Claim("sent", attempts=row.attempts, reply=row.reply)
        if row.state == "failed":
            return Claim("failed", attempts=row.attempts)
        remaining = (row.lease_until - now).total_seconds() if row.lease_until else 0.0
        return Claim("busy", attempts=row.attempts, wait_s=max(remaining, 0.0))

    async def _finish(self, notification_id: str, **values: object) -> None:
        await self._finishes.submit(
            (notification_id, {"lease_until": None, "updated_at": utcnow(), **values})
        )

    def _finish_statement(self, columns: tuple[str, ...]) -> Any:
        if columns not in self._finish_statements:
            table = cast(Table, Delivery.__table__)
            self._finish_statements[columns] = (
                update(table)
                .where(table.c.notification_id == bindparam("b_id"))
                .values({c: bindparam(f"v_{c}") for c in columns})
            )
        return self._finish_statements[columns]

    async def _finish_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[None]:
        """One transaction; one statement per set of columns, run for every row at once."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for notification_id, values in items:
            row = {"b_id": notification_id} | {f"v_{k}": v for k, v in values.items()}
            groups.setdefault(tuple(sorted(values)), []).append(row)
        async with self.db.engine.begin() as conn:
            for columns, rows in groups.items():
                await conn.execute(self._finish_statement(columns), rows)
        return [None] * len(items)

    async def mark_sent(self, notification_id: str, reply: str) -> None:
        await self._finish(notification_id, state="sent", reply=reply[:2000])

    async def mark_failed(self, notification_id: str, error: str) -> None:
        await self._finish(notification_id, state="failed", last_error=error[:2000])

    async def release(self, notification_id: str, error: str | None = None) -> None:
        """Back to claimable: the attempt did not send (a transient failure, a wait)."""
        await self._finish(notification_id, state="pending", last_error=error and error[:2000])

    async def get(self, notification_id: str) -> Delivery | None:
        async with self.db.sessions() as session:
            found: Delivery | None = await session.scalar(
                select(Delivery).where(Delivery.notification_id == notification_id)
            )
            return found
