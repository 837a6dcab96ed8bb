"""Accepting notifications, answering their status, recording what workers report."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, inspect, select, update

from tidings.core import jsons
from tidings.core.batching import Batcher
from tidings.core.db import Database, utcnow
from tidings.core.errors import Conflict, InvalidInput, NotFound
from tidings.core.limits import check_text
from tidings.core.logs import current_correlation_id
from tidings.core.lookups import TemplateDirectory
from tidings.core.messages import TERMINAL_STATUSES
from tidings.core.metrics import NOTIFICATIONS, STAGE_SECONDS
from tidings.core.ratelimit import RateLimiter
from tidings.core.topology import route_for
from tidings.gateway.lookups import UserDirectory
from tidings.gateway.models import Notification, NotificationEvent, OutboxMessage, message_for
from tidings.gateway.relay import OutboxRelay
from tidings.gateway.schemas import NotificationAccepted, NotificationCreate, NotificationOut
from tidings.gateway.suppressions import Suppressions

log = logging.getLogger("tidings.gateway")


def body_hash(body: NotificationCreate) -> str:
    canonical = jsons.dumps(body.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical).hexdigest()


def accepted(n: Notification) -> NotificationAccepted:
    """The answer to the request that created ``n``, the same every time it is repeated."""
    return NotificationAccepted(
        notification_id=n.id,
        request_id=n.request_id,
        status="skipped" if n.status == "skipped" else "pending",
        notification_type=n.notification_type,
        created_at=n.created_at,
    )


def _rank(status: str) -> int:
    return 1 if status in TERMINAL_STATUSES else 0


def may_move(current: str, new: str, bounced: bool = False) -> bool:
    """Whether a report may move the status at all (every report is kept in the history).

    delivered, skipped and cancelled are final, but for a bounce: a mail server that took the
    message can still report later that it could not deliver it (delivered -> failed).
    failed can still become delivered (a retry or replay that succeeds) or pending (a replay).
    """
    if current == "delivered" and new == "failed" and bounced:
        return True
    if current in ("delivered", "skipped", "cancelled"):
        return False
    if current == "failed":
        return new in ("delivered", "pending")
    return True


@dataclass(frozen=True)
class StatusReport:
    """A report about a notification: a worker's status event, a provider's, an API call."""

    notification_id: uuid.UUID
    channel: str
    status: str
    at: dt.datetime | None = None
    error: str | None = None
    detail: str | None = None
    attempt: int | None = None
    round_: int | None = None
    bounced: bool = False


def _columns(row: Any) -> dict[str, Any]:
    """An ORM object's values by column name, for a Core bulk INSERT (a database-made id left
    out). Core, not the ORM's bulk path: per batch the ORM's machinery cost more than the
    statements (py-spy; docs/performance.md)."""
    values = {
        prop.columns[0].key: getattr(row, prop.key) for prop in inspect(type(row)).column_attrs
    }
    if values.get("id") is None:
        values.pop("id", None)
    return values


class NotificationService:
    def __init__(
        self,
        db: Database,
        users: UserDirectory,
        templates: TemplateDirectory,
        relay: OutboxRelay,
        priority_lane_min: int = 7,
    ) -> None:
        self.priority_lane_min = priority_lane_min
        # (limiter, rate per second, burst) per recipient; None: no limit.
        self.recipient_limit: tuple[RateLimiter, float, int] | None = None
        self.suppressions: Suppressions | None = None
        self.db = db
        self.users = users
        self.templates = templates
        self.relay = relay
        # Group commit (core.batching): concurrent requests share one query or transaction.
        self._finds: Batcher[tuple[str, str], Notification | None] = Batcher(self._find_many)
        self._writes: Batcher[list[Any], bool] = Batcher(self._write_many)
        self._reports: Batcher[StatusReport, str] = Batcher(self._record_many)

    async def _by_request_id(self, owner: str, request_id: str) -> Notification | None:
        return await self._finds.submit((owner, request_id))

    async def _find_many(
        self, keys: list[tuple[str, str]]
    ) -> list[Notification | BaseException | None]:
        """Request ids are per owner: (owner, request_id) pairs, found in one query. An id
        PostgreSQL cannot take would fail that query for the whole group: it is refused
        alone, before the query (the schemas refuse it first; this holds for any caller that
        skips them)."""
        refused: dict[tuple[str, str], BaseException] = {}
        for key in keys:
            try:
                check_text(key[1])
            except ValueError as exc:
                refused[key] = InvalidInput(f"request_id: {exc}")
        wanted = [k for k in keys if k not in refused]
        found: dict[tuple[str, str], Notification] = {}
        if wanted:
            async with self.db.statements() as session:
                found = {
                    (n.owner, n.request_id): n
                    for n in await session.scalars(
                        select(Notification).where(
                            Notification.request_id.in_({r for _, r in wanted}),
                            Notification.owner.in_({o for o, _ in wanted}),
                        )
                    )
                }
        return [refused[k] if k in refused else found.get(k) for k in keys]

    async def _write_many(self, items: list[list[Any]]) -> list[bool]:
        """Each item: a notification and the rows that go with it (``build``). One
        transaction for all; an item whose request_id is taken (by an earlier item of the
        batch, or another request) writes nothing and answers False."""
        table = cast(Table, Notification.__table__)
        new = (
            self.db.insert(table)
            .on_conflict_do_nothing(index_elements=[table.c.owner, table.c.request_id])
            .returning(table.c.id)
        )
        async with self.db.engine.begin() as conn:
            written = await conn.execute(new, [_columns(rows[0]) for rows in items])
            inserted = set(written.scalars())
            followers = [r for rows in items if rows[0].id in inserted for r in rows[1:]]
            for model in (NotificationEvent, OutboxMessage):
                values = [_columns(r) for r in followers if isinstance(r, model)]
                if values:
                    await conn.execute(insert(cast(Table, model.__table__)), values)
        return [rows[0].id in inserted for rows in items]

    @staticmethod
    def _repeat(existing: Notification, digest: str) -> tuple[NotificationAccepted, bool]:
        if existing.body_hash != digest:
            raise Conflict(
                f"request_id {existing.request_id!r} was already used with a different body"
            )
        return accepted(existing), True

    async def lookups(self, body: NotificationCreate) -> tuple[dict[str, Any], dict[str, Any]]:
        """The user and the template version (NotFound if either is unknown)."""
        user = await self.users.get(body.user_id)
        language = user.get("language", "en")
        template = await self.templates.get(body.template_code, body.notification_type, language)
        return user, template

    async def admit(self, body: NotificationCreate, user: dict[str, Any]) -> str | None:
        """Why the notification is to be skipped (None: it goes), after the per-recipient
        rate limit (a skipped notification sends nothing: not counted)."""
        channel = body.notification_type
        if not user.get("preferences", {}).get(channel, False):
            return f"the user's {channel} preference is off"
        if channel == "email" and self.suppressions is not None and user.get("email"):
            suppressed = await self.suppressions.reason_for(user["email"])
            if suppressed is not None:
                return f"the address is suppressed ({suppressed})"
        if self.recipient_limit is None:
            return None
        limiter, rate_per_s, burst = self.recipient_limit
        await limiter.check(f"user:{body.user_id}", rate_per_s, burst, "notifications to this user")
        return None

    def build(
        self,
        body: NotificationCreate,
        digest: str,
        user: dict[str, Any],
        template: dict[str, Any],
        skip_reason: str | None,
        owner: str = "admin",
    ) -> tuple[Notification, list[Any]]:
        """The notification, its first history entry and (unless skipped) its outbox row.
        ``owner``: the client it belongs to (router.owner_of)."""
        channel = body.notification_type
        now = utcnow()
        scheduled = body.send_at is not None and body.send_at > now
        status = "skipped" if skip_reason else "scheduled" if scheduled else "pending"
        correlation = current_correlation_id()
        notification = Notification(
            id=uuid.uuid4(),
            owner=owner,
            request_id=body.request_id,
            body_hash=digest,
            user_id=body.user_id,
            notification_type=channel,
            template_code=body.template_code,
            language=template["language"],
            priority=body.priority,
            variables=body.variables.model_dump(mode="json"),
            extra=body.metadata,
            status=status,
            error=None,
            correlation_id=correlation,
            round=0,
            attempt=0,
            created_at=now,
            updated_at=now,
        )
        detail = skip_reason or (
            f"scheduled for {body.send_at:%Y-%m-%dT%H:%M:%SZ}" if scheduled else "accepted"
        )
        rows: list[Any] = [
            notification,
            NotificationEvent(
                notification_id=notification.id, status=status, detail=detail, created_at=now
            ),
        ]
        if skip_reason is None:
            message = message_for(notification, user)
            rows.append(
                OutboxMessage(
                    notification_id=notification.id,
                    routing_key=route_for(channel, body.priority, self.priority_lane_min),
                    payload=message.dumps(),
                    correlation_id=correlation,
                    created_at=now,
                    available_at=body.send_at if scheduled else now,
                )
            )
        return notification, rows

    def _logged(self, n: Any, attempt: int | None = None, status: str | None = None) -> None:
        """One structured line per status change: the notification's lifecycle. ``n``: a
        Notification or a row with its columns; ``status``: the one it moved to, when it has
        moved again since (in one batch of reports)."""
        status = status or n.status
        NOTIFICATIONS.labels(n.notification_type, status).inc()
        age_ms = round((utcnow() - n.created_at).total_seconds() * 1e3, 1)
        if status in TERMINAL_STATUSES and status != "skipped":
            STAGE_SECONDS.labels(n.notification_type, status).observe(age_ms / 1e3)
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

    async def accept(
        self, body: NotificationCreate, owner: str = "admin"
    ) -> tuple[NotificationAccepted, bool]:
        """Store the notification and its outgoing message in one transaction.

        Returns the answer and whether it repeats an earlier request of ``owner`` with the
        same id (another owner's ids are not seen: each client has its own).
        """
        digest = body_hash(body)
        existing = await self._by_request_id(owner, body.request_id)
        if existing is not None:
            return self._repeat(existing, digest)
        user, template = await self.lookups(body)
        skip_reason = await self.admit(body, user)
        notification, rows = self.build(body, digest, user, template, skip_reason, owner)
        if not await self._writes.submit(rows):
            # Another request with this request_id won the race: answer as a repeat.
            existing = await self._by_request_id(owner, body.request_id)
            if existing is None:
                raise Conflict(f"request_id {body.request_id!r} is being used; send it again")
            return self._repeat(existing, digest)
        if len(rows) > 2:
            self.relay.wake()
        self._logged(notification)
        return accepted(notification), False

    async def cancel(self, notification_id: uuid.UUID, owner: str | None = None) -> NotificationOut:
        """Cancel a notification whose message has not been published yet. ``owner``: only
        if it is theirs (another's is not found, as a missing one); None: anyone's."""
        async with self.db.sessions() as session, session.begin():
            n = await session.scalar(
                select(Notification).where(Notification.id == notification_id).with_for_update()
            )
            if n is None or (owner is not None and n.owner != owner):
                raise NotFound(f"notification {notification_id} not found")
            if n.status in (*TERMINAL_STATUSES, "cancelled"):
                raise Conflict(f"notification {notification_id} is already {n.status}")
            removed = await session.execute(
                delete(OutboxMessage).where(OutboxMessage.notification_id == notification_id)
            )
            if not removed.rowcount:  # type: ignore[attr-defined]
                raise Conflict(
                    f"notification {notification_id} is already on its way: too late to cancel"
                )
            n.status = "cancelled"
            session.add(
                NotificationEvent(
                    notification_id=n.id,
                    status="cancelled",
                    detail="cancelled",
                    created_at=utcnow(),
                )
            )
        self._logged(n)
        return await self.get(notification_id)

    async def get(self, notification_id: uuid.UUID, owner: str | None = None) -> NotificationOut:
        """The notification and its history; ``owner`` as for :meth:`cancel`."""
        async with self.db.sessions() as session:
            n = await session.get(Notification, notification_id)
            if n is None or (owner is not None and n.owner != owner):
                raise NotFound(f"notification {notification_id} not found")
            events = (
                await session.scalars(
                    select(NotificationEvent)
                    .where(NotificationEvent.notification_id == notification_id)
                    .order_by(NotificationEvent.created_at, NotificationEvent.id)
                )
            ).all()
        return NotificationOut(
            notification_id=n.id,
            request_id=n.request_id,
            user_id=n.user_id,
            notification_type=n.notification_type,
            template_code=n.template_code,
            language=n.language,
            priority=n.priority,
            status=n.status,
            error=n.error,
            metadata=n.extra,
            created_at=n.created_at,
            updated_at=n.updated_at,
            history=[
                {
                    "status": e.status,
                    "detail": e.detail,
                    "error": e.error,
                    "attempt": e.attempt,
                    "timestamp": e.created_at,
                }
                for e in events
            ],
        )

    async def record_status(
        self,
        notification_id: uuid.UUID,
        channel: str,
        status: str,
        *,
        at: dt.datetime | None = None,
        error: str | None = None,
        detail: str | None = None,
        attempt: int | None = None,
        round_: int | None = None,
        bounced: bool = False,
    ) -> str:
        """Record a report about a notification; returns its status afterwards.

        A report without ``round_``/``attempt`` (the HTTP status API) speaks of the current
        round and attempt. Concurrent reports are recorded together, in one transaction.
        """
        report = StatusReport(
            notification_id, channel, status, at, error, detail, attempt, round_, bounced
        )
        return await self._reports.submit(report)

    async def _record_many(self, reports: list[StatusReport]) -> list[str | Exception]:
        """Every report in the history; the status moved by those that may move it, in
        the order they came (reports of one notification in one batch apply in turn)."""
        moves: list[tuple[Any, str, int | None]] = []
        results: list[str | Exception] = []
        table = cast(Table, Notification.__table__)
        c = table.c
        # Core rows, not ORM objects (docs/performance.md); the moved ones updated at once.
        async with self.db.engine.begin() as conn:
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
                    )
                    .where(c.id.in_({r.notification_id for r in reports}))
                    .order_by(c.id)
                    .with_for_update()
                )
            }
            events = []
            moved: dict[uuid.UUID, Any] = {}
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
                round_ = n.round if r.round_ is None else r.round_
                attempt_ = n.attempt if r.attempt is None else r.attempt
                newer = (round_, attempt_, _rank(r.status)) >= (
                    n.round,
                    n.attempt,
                    _rank(n.status),
                )
                if (newer or r.bounced) and may_move(n.status, r.status, r.bounced):
                    n.status = r.status
                    n.error = r.error if r.status == "failed" else None
                    n.round, n.attempt = round_, attempt_
                    moves.append((n, r.status, r.attempt))
                    moved[n.id] = n
                results.append(n.status)
            if moved:
                now = utcnow()
                await conn.execute(
                    update(table)
                    .where(c.id == bindparam("b_id"))
                    .values(
                        status=bindparam("b_status"),
                        error=bindparam("b_error"),
                        round=bindparam("b_round"),
                        attempt=bindparam("b_attempt"),
                        updated_at=now,
                    ),
                    [
                        {
                            "b_id": n.id,
                            "b_status": n.status,
                            "b_error": n.error,
                            "b_round": n.round,
                            "b_attempt": n.attempt,
                        }
                        for n in moved.values()
                    ],
                )
            if events:
                await conn.execute(insert(cast(Table, NotificationEvent.__table__)), events)
        for n, status, attempt in moves:
            self._logged(n, attempt, status)
        return results
