"""Status transitions: what workers, providers and the status API report, recorded and
applied by the one transition table (core.status), and the client's cancel."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Table, delete, select

from tidings.core.batching import Batcher
from tidings.core.bulk import insert_rows, update_rows
from tidings.core.db import Database, utcnow
from tidings.core.errors import Conflict, NotFound
from tidings.core.metrics import NOTIFICATIONS, STAGE_SECONDS, child
from tidings.core.status import TERMINAL, Status, may_move, rank
from tidings.gateway.listing import visible
from tidings.gateway.models import Notification, NotificationEvent, OutboxMessage
from tidings.gateway.queries import NotificationQueries
from tidings.gateway.schemas import NotificationOut
from tidings.webhooks.endpoints import capture_in

log = logging.getLogger(__name__)


def log_change(n: Any, attempt: int | None = None, status: str | None = None) -> None:
    """One structured line per status change: the notification's lifecycle. ``n``: a
    Notification or a row with its columns; ``status``: the one it moved to, when it has
    moved again since (in one batch of reports)."""
    status = status or n.status
    child(NOTIFICATIONS, n.notification_type, status).inc()
    age_ms = round((utcnow() - n.created_at).total_seconds() * 1e3, 1)
    if status in TERMINAL and status != Status.SKIPPED:
        child(STAGE_SECONDS, n.notification_type, status).observe(age_ms / 1e3)
    log.info(
        "notification %s %s",
        n.id,
        status,
        extra={
            "notification_id": str(n.id),
            "request_id": n.request_id,
            "status": status,
            "channel": n.notification_type,
            "attempt": attempt,
            "duration_ms": age_ms,
        },
    )


@dataclass(frozen=True)
class StatusReport:
    """A report about a notification: a worker's status event, a provider's, an API call."""

    notification_id: uuid.UUID
    channel: str
    status: Status
    at: dt.datetime | None = None
    error: str | None = None
    detail: str | None = None
    attempt: int | None = None
    round_: int | None = None
    bounced: bool = False
    # Push devices found gone delivering it, (device_id, reason): device.removed events.
    removed: tuple[tuple[str, str], ...] = ()


def device_removed(n: Any, device_id: str, reason: str, at: dt.datetime) -> dict[str, Any]:
    """A device.removed webhook event (docs/webhooks.md), for the notification's owner."""
    data = {
        "notification_id": str(n.id),
        "request_id": n.request_id,
        "user_id": str(n.user_id),
        "device_id": device_id,
        "reason": reason[:1000],
    }
    return {"event_type": "device.removed", "owner": n.owner, "extra": data, "created_at": at}


class StatusTransitions:
    """Moves notifications between statuses: every report kept in the history, the status
    moved only as core.status.TRANSITIONS allows. Concurrent reports are recorded together,
    in one transaction (core.batching)."""

    def __init__(self, db: Database, queries: NotificationQueries) -> None:
        self._db = db
        self._queries = queries
        self._reports: Batcher[StatusReport, Status] = Batcher(self._record_many)

    async def cancel(self, notification_id: uuid.UUID, owner: str | None) -> NotificationOut:
        """Cancel a notification whose message has not been published yet. ``owner``: only
        if it is theirs (another's is not found, as a missing one); None: anyone's."""
        async with self._db.sessions() as session, session.begin():
            n = await session.scalar(
                visible(owner).where(Notification.id == notification_id).with_for_update()
            )
            if n is None:
                raise NotFound(f"notification {notification_id} not found")
            if not may_move(n.status, Status.CANCELLED):
                raise Conflict(f"notification {notification_id} is already {n.status}")
            removed = await session.execute(
                delete(OutboxMessage).where(OutboxMessage.notification_id == notification_id)
            )
            if not removed.rowcount:  # type: ignore[attr-defined]
                raise Conflict(
                    f"notification {notification_id} is already on its way: too late to cancel"
                )
            n.status = Status.CANCELLED
            session.add(
                NotificationEvent(
                    notification_id=n.id,
                    status=Status.CANCELLED,
                    detail="cancelled",
                    created_at=utcnow(),
                )
            )
        log_change(n)
        return await self._queries.get(notification_id, owner)

    async def record_status(
        self,
        notification_id: uuid.UUID,
        channel: str,
        status: Status,
        *,
        at: dt.datetime | None = None,
        error: str | None = None,
        detail: str | None = None,
        attempt: int | None = None,
        round_: int | None = None,
        bounced: bool = False,
        removed: tuple[tuple[str, str], ...] = (),
    ) -> Status:
        """Record a report about a notification; returns its status afterwards.

        A report without ``round_``/``attempt`` (the HTTP status API) speaks of the current
        round and attempt. Concurrent reports are recorded together, in one transaction.
        """
        report = StatusReport(
            notification_id, channel, status, at, error, detail, attempt, round_, bounced, removed
        )
        return await self._reports.submit(report)

    async def _record_many(self, reports: list[StatusReport]) -> list[Status | Exception]:
        """Every report in the history; the status moved by those that may move it, in
        the order they came (reports of one notification in one batch apply in turn)."""
        moves: list[tuple[Any, str, int | None]] = []
        results: list[Status | Exception] = []
        table = cast(Table, Notification.__table__)
        c = table.c
        # Core rows, not ORM objects (docs/performance.md); the moved ones updated at once.
        async with self._db.engine.begin() as conn:
            # Locked in id order: two batches never wait on each other in a cycle.
            found = {
                row.id: SimpleNamespace(**row._mapping)
                for row in await conn.execute(
                    select(
                        c.id,
                        c.request_id,
                        c.notification_type,
                        c.status,
                        c.error,
                        c.round,
                        c.attempt,
                        c.created_at,
                        c.owner,
                        c.user_id,
                    )
                    .where(c.id.in_({r.notification_id for r in reports}))
                    .order_by(c.id)
                    .with_for_update()
                )
            }
            events = []
            moved: dict[uuid.UUID, Any] = {}
            # One per (notification, device) in a batch; the webhooks worker keys them so too.
            gone: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}
            for r in reports:
                n = found.get(r.notification_id)
                if n is None:
                    results.append(NotFound(f"notification {r.notification_id} not found"))
                    continue
                if n.notification_type != r.channel:
                    results.append(
                        Conflict(
                            f"notification {r.notification_id} is a "
                            f"{n.notification_type} notification"
                        )
                    )
                    continue
                events.append(
                    {
                        "notification_id": n.id,
                        "status": r.status,
                        "detail": r.detail,
                        "error": r.error,
                        "attempt": r.attempt,
                        "created_at": r.at or utcnow(),
                    }
                )
                for device_id, reason in r.removed:
                    gone[n.id, device_id] = device_removed(n, device_id, reason, r.at or utcnow())
                round_ = n.round if r.round_ is None else r.round_
                attempt_ = n.attempt if r.attempt is None else r.attempt
                newer = (round_, attempt_, rank(r.status)) >= (
                    n.round,
                    n.attempt,
                    rank(n.status),
                )
                if (newer or r.bounced) and may_move(n.status, r.status, r.bounced):
                    n.status = r.status
                    n.error = r.error if r.status == Status.FAILED else None
                    n.round, n.attempt = round_, attempt_
                    moves.append((n, r.status, r.attempt))
                    moved[n.id] = n
                results.append(Status(n.status))
            if moved:
                now = utcnow()
                await update_rows(
                    conn,
                    table,
                    "id",
                    [
                        {
                            "id": n.id,
                            "status": n.status,
                            "error": n.error,
                            "round": n.round,
                            "attempt": n.attempt,
                            "updated_at": now,
                        }
                        for _, n in sorted(moved.items())
                    ],
                )
            await insert_rows(conn, cast(Table, NotificationEvent.__table__), events)
            await capture_in(conn, list(gone.values()))
        for n, status, attempt in moves:
            log_change(n, attempt, status)
        return results
