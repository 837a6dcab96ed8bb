"""Idempotent delivery: the delivery record each worker keeps per notification.

A message is sent only by the worker that *claims* its notification, in one statement:
the row is created, or moved from ``pending`` (or ``failed``, for a replay of a later round,
or ``sending`` whose lease has run out) to ``sending`` with a lease. ``sent`` is final. So a
redelivered or duplicated message never sends a delivered notification again, and a worker
that dies mid-send costs at most one duplicate, after its lease.

Leases are taken, renewed and compared on the database's clock (``now()``; SQLite's own on the
embedded default), never a worker's: a worker whose clock runs two minutes fast must not see
a live lease as expired. The holder renews its lease right before it hands the message over
(``renew``, after any wait for a connection) unless the claim's lease still covers the
hand-over (core.flow.renew_lease), and the renewal is refused once another worker has claimed
the row (the claim's ``attempts`` is the holder's token).

Claims, renewals and outcomes of concurrent messages are each written together, in one
statement per group (core.batching), claims and outcomes on PostgreSQL outside a transaction.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import (
    Interval,
    Table,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from tidings.core.batching import Batcher
from tidings.core.bulk import array_of
from tidings.core.db import Database, UTCDateTime, utcnow
from tidings.core.deliveries.models import Delivery
from tidings.core.errors import Conflict

ClaimResult = Literal["claimed", "sent", "busy", "failed"]


class LeaseLost(Conflict):
    """Our lease ended and another worker claimed the notification: this attempt must not
    send (the other holder does)."""


@dataclass(frozen=True)
class Claim:
    result: ClaimResult
    attempts: int = 0
    # For "busy": how long until the holder's lease runs out.
    wait_s: float = 0.0
    reply: str | None = None


def lease_clock() -> float:
    """The clock a lease's age is read on: this process's monotonic clock (tests move it)."""
    return _clock()


_clock = time.monotonic


class DeliveryStore:
    def __init__(self, db: Database, lease_s: float) -> None:
        self.db = db
        self.lease_s = lease_s
        # Outcomes of concurrent sends are written together (core.batching).
        self._finishes: Batcher[tuple[str, dict[str, Any]], None] = Batcher(self._finish_many)
        self._claims: Batcher[tuple[str, int], Claim] = Batcher(self._claim_many)
        self._renewals: Batcher[tuple[str, int], bool] = Batcher(self._renew_many)
        self._claim: Any = None
        self._renew: Any = None
        self._finish_statements: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] = {}

    def _db_now(self, plus_lease: bool = False) -> ColumnElement[Any]:
        """The database's current time, or its time plus the lease."""
        if self.db.is_postgres:
            now: ColumnElement[Any] = func.now()
            if plus_lease:
                now = now + literal(dt.timedelta(seconds=self.lease_s), Interval())
            return now
        # SQLite: the format SQLAlchemy stores its DATETIMEs in (microseconds: %f gives
        # milliseconds), so the strings compare in time order with the stored ones.
        modifier = f"+{self.lease_s if plus_lease else 0} seconds"
        text = func.strftime("%Y-%m-%d %H:%M:%f", "now", modifier).concat("000")
        return type_coerce(text, UTCDateTime())

    def _claim_statement(self) -> Any:
        """The claim, built once (its parameters bound per call): building and keying a
        statement per message cost more than running it (py-spy; docs/performance.md)."""
        table = cast(Table, Delivery.__table__)
        insert = self.db.insert(table).values(
            notification_id=bindparam("nid", type_=table.c.notification_id.type),
            state="sending",
            round=bindparam("round", type_=table.c.round.type),
            attempts=1,
            lease_until=self._db_now(plus_lease=True),
            updated_at=self._db_now(),
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
        ).returning(table.c.notification_id, table.c.attempts)

    async def claim(self, notification_id: str, round_: int = 0) -> Claim:
        return await self._claims.submit((notification_id, round_))

    async def _claim_many(self, items: list[tuple[str, int]]) -> list[Claim]:
        """One multi-row claim for the group, its own transaction (rows in id order, so two
        workers' groups never lock each other in a cycle), then one read of the rows it did
        not claim, which needs no lock. A notification twice in the group is claimed by its
        first message; the others find it held (a statement cannot claim a row twice)."""
        if self._claim is None:
            self._claim = self._claim_statement()
        rounds: dict[str, int] = {}
        for nid, round_ in items:
            rounds.setdefault(nid, round_)
        params = [{"nid": nid, "round": rounds[nid]} for nid in sorted(rounds)]
        async with self.db.autocommit.connect() as conn:
            claimed = {row[0]: row[1] for row in await conn.execute(self._claim, params)}
            others = [nid for nid in rounds if nid not in claimed]
            found = {}
            if others:
                found = {
                    row.notification_id: row
                    for row in await conn.execute(
                        select(Delivery.__table__, self._db_now().label("db_now")).where(
                            Delivery.notification_id.in_(others)
                        )
                    )
                }
        results: list[Claim] = []
        for nid, _ in items:
            if nid in claimed:
                results.append(Claim("claimed", attempts=claimed.pop(nid)))
            elif nid in found:
                results.append(_held(found[nid]))
            else:  # claimed by this group's first message of it
                results.append(Claim("busy", wait_s=self.lease_s))
        return results

    def _renew_statement(self) -> Any:
        table = cast(Table, Delivery.__table__)
        return (
            update(table)
            .where(
                tuple_(table.c.notification_id, table.c.attempts).in_(
                    bindparam("held", expanding=True)
                ),
                table.c.state == "sending",
            )
            .values(lease_until=self._db_now(plus_lease=True))
            .returning(table.c.notification_id, table.c.attempts)
        )

    async def renew(self, notification_id: str, attempts: int) -> None:
        """A new lease from now, for the holder of claim number ``attempts``; LeaseLost if
        the row has been claimed again (or settled) since."""
        if not await self._renewals.submit((notification_id, attempts)):
            raise LeaseLost(f"notification {notification_id}: the lease went to another worker")

    async def _renew_many(self, items: list[tuple[str, int]]) -> list[bool]:
        """One statement for the group's renewals; True for each one that renewed."""
        if self._renew is None:
            self._renew = self._renew_statement()
        async with self.db.autocommit.connect() as conn:
            rows = await conn.execute(self._renew, {"held": sorted(set(items))})
            renewed = {(row[0], row[1]) for row in rows}
        return [item in renewed for item in items]

    async def _finish(self, notification_id: str, **values: object) -> None:
        await self._finishes.submit(
            (notification_id, {"lease_until": None, "updated_at": utcnow(), **values})
        )

    def _finish_statement(self, columns: tuple[str, ...], masked: tuple[str, ...]) -> Any:
        """The outcome statement for one set of columns. On PostgreSQL one ``UPDATE … FROM
        unnest(…)`` for every row of the group, whatever each row sets: a column only some
        rows set (``masked``) comes with an array of flags saying which, and the others keep
        theirs (``core.bulk``'s form, with the flags). On SQLite an
        ``executemany`` of a one-row UPDATE per set of columns (``masked`` is empty)."""
        key = (columns, masked)
        if key not in self._finish_statements:
            table = cast(Table, Delivery.__table__)
            if self.db.is_postgres:
                dialect = self.db.engine.dialect
                names = ("notification_id", *columns)
                arrays = [array_of(table, n, dialect) for n in names]
                arrays += [f"CAST(:has_{c} AS boolean[])" for c in masked]
                sets = ", ".join(
                    f"{c} = CASE WHEN v.has_{c} THEN v.{c} ELSE d.{c} END"
                    if c in masked
                    else f"{c} = v.{c}"
                    for c in columns
                )
                aliases = ", ".join([*names, *(f"has_{c}" for c in masked)])
                self._finish_statements[key] = text(
                    f"UPDATE {table.name} AS d SET {sets} FROM unnest({', '.join(arrays)}) AS "
                    f"v({aliases}) WHERE d.notification_id = v.notification_id"
                )
            else:
                self._finish_statements[key] = (
                    update(table)
                    .where(table.c.notification_id == bindparam("b_id"))
                    .values({c: bindparam(f"v_{c}") for c in columns})
                )
        return self._finish_statements[key]

    async def _finish_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[None]:
        """On PostgreSQL one statement for the whole group, on its own (autocommit: a single
        statement is atomic, so no BEGIN and COMMIT round trips). A notification twice in a
        group gets its last outcome; rows go in id order (a lock order two workers share)."""
        last = {notification_id: values for notification_id, values in items}
        ids = sorted(last)
        if self.db.is_postgres:
            columns = tuple(sorted({c for values in last.values() for c in values}))
            masked = tuple(c for c in columns if any(c not in last[i] for i in ids))
            params: dict[str, Any] = {"notification_id": ids}
            params |= {c: [last[i].get(c) for i in ids] for c in columns}
            params |= {f"has_{c}": [c in last[i] for i in ids] for c in masked}
            async with self.db.autocommit.connect() as conn:
                await conn.execute(self._finish_statement(columns, masked), params)
            return [None] * len(items)
        groups: dict[tuple[str, ...], list[str]] = {}
        for i in ids:
            groups.setdefault(tuple(sorted(last[i])), []).append(i)
        async with self.db.engine.begin() as conn:
            for columns, rows in groups.items():
                await conn.execute(
                    self._finish_statement(columns, ()),
                    [{"b_id": i} | {f"v_{c}": last[i][c] for c in columns} for i in rows],
                )
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


def _held(found: Any) -> Claim:
    """What a claim that did not take the row found there."""
    if found.state == "sent":
        return Claim("sent", attempts=found.attempts, reply=found.reply)
    if found.state == "failed":
        return Claim("failed", attempts=found.attempts, reply=found.last_error)
    lease_until = found.lease_until
    remaining = (lease_until - found.db_now).total_seconds() if lease_until else 0.0
    return Claim("busy", attempts=found.attempts, wait_s=max(remaining, 0.0))


@dataclass(frozen=True)
class Lease:
    """The claim an attempt holds: its token (``attempts``), and when it was asked for on
    ``lease_clock`` (before the claim reached the database, so never later than the
    database's own ``now()`` the lease ran from)."""

    deliveries: DeliveryStore
    notification_id: str
    attempts: int
    asked_at: float

    def covers(self, within_s: float) -> bool:
        """True when the claim's lease certainly lasts past ``within_s`` seconds from now,
        with a margin (a tenth of the lease, at least a second). Elapsed time on one clock, so
        a worker's clock that is wrong (ahead, behind) does not matter, only one that runs at
        a wrong rate, which the margin covers."""
        lease_s = self.deliveries.lease_s
        margin_s = max(1.0, lease_s / 10)
        return lease_clock() - self.asked_at + within_s <= lease_s - margin_s

    async def renew(self) -> None:
        await self.deliveries.renew(self.notification_id, self.attempts)
