"""Dead letters: the gateway drains failed.queue into a table, where they can be listed,
inspected and replayed. A replay is a new round of the same notification, published through
the outbox; it never sends a notification that was delivered. A dead-lettered status event
keeps its notification id too, and its replay publishes it to status.queue again.

While the gateway's database is down the consumer waits (failed's retry tiers), it does not
spin: each dead letter goes round again later, its reason and source written on it."""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select

from tidings.core.bus import Bus, BusMessage, wait_out
from tidings.core.db import Database, utcnow
from tidings.core.envelope import PaginationMeta
from tidings.core.errors import InvalidInput, NotFound
from tidings.core.messages import NotificationMessage, StatusEvent, salvage
from tidings.core.status import Status, message_id_of
from tidings.core.topology import (
    FAILED_ROUTE,
    REASON_HEADER,
    SOURCE_QUEUE_HEADER,
    STATUS_ROUTE,
)
from tidings.gateway.lookups import UserDirectory
from tidings.gateway.models import (
    DeadLetter,
    Notification,
    Replay,
    message_for,
    requeue_rows,
)
from tidings.gateway.relay import OutboxRelay
from tidings.gateway.schemas import DeadLetterFilter, DeadLetterOut, ReplayRequest, ReplayResult
from tidings.gateway.transitions import StatusTransitions

log = logging.getLogger(__name__)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def reason_of(headers: dict[str, Any]) -> str:
    """Ours when a worker dead-lettered it; otherwise what RabbitMQ says in x-death."""
    if headers.get(REASON_HEADER):
        return str(headers[REASON_HEADER])
    deaths = headers.get("x-death") or []
    if deaths and isinstance(deaths[0], dict):
        first = deaths[0]
        return f"dead-lettered by the broker: {first.get('reason')} (from {first.get('queue')})"
    return "dead-lettered without a reason"


def read(payload: bytes) -> NotificationMessage | StatusEvent | None:
    """What a dead letter carries: a notification's work message, a status event, or
    neither (a body no worker could read). Parsed once, here."""
    for model in (NotificationMessage, StatusEvent):
        try:
            return model.model_validate_json(payload)
        except ValidationError:
            continue
    return None


def to_out(row: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        dead_letter_id=row.id,
        notification_id=row.notification_id,
        source_queue=row.source_queue,
        reason=row.reason,
        attempts=row.attempts,
        errors=row.errors,
        replay_count=row.replay_count,
        replayed_at=row.replayed_at,
        created_at=row.created_at,
        payload=row.payload.decode("utf-8", "replace"),
        headers=row.headers,
    )


class DeadLetters:
    """failed.queue's consumer and the dead-letter table: each dead letter stored once (by
    a fingerprint of its body and reason), its notification marked failed; listed, found
    and replayed by the admin API and the dashboard."""

    def __init__(
        self,
        db: Database,
        transitions: StatusTransitions,
        users: UserDirectory,
        relay: OutboxRelay,
        bus: Bus,
    ) -> None:
        self._db = db
        self._transitions = transitions
        self._users = users
        self._relay = relay
        self._bus = bus

    async def __call__(self, message: BusMessage) -> None:
        """The failed.queue consumer: store it (once), and make sure its notification says
        failed (a broker dead-lettering after the delivery limit reports nothing itself)."""
        reason = reason_of(message.headers)
        source = str(message.headers.get(SOURCE_QUEUE_HEADER) or message.routing_key)
        try:
            await self._store(message, reason, source)
        except Exception as exc:
            # Written on the copy: after a round through a retry queue, x-death speaks of
            # that queue, not of why the message died.
            await wait_out(
                self._bus,
                message,
                FAILED_ROUTE,
                exc,
                **{REASON_HEADER: reason[:1000], SOURCE_QUEUE_HEADER: source},
            )

    async def _store(self, message: BusMessage, reason: str, source: str) -> None:
        headers = _json_safe(message.headers)
        carried = read(message.body)
        parsed = carried if isinstance(carried, NotificationMessage) else None
        found_id: str | None = None
        if carried is not None:
            found_id = carried.notification_id
        else:
            salvaged = salvage(message.body)
            found_id = salvaged["notification_id"] if salvaged else None
        try:
            notification_id = uuid.UUID(found_id) if found_id else None
        except ValueError:
            notification_id = None
        fingerprint = hashlib.sha256(message.body + b"\x00" + reason.encode()).hexdigest()
        stmt = (
            self._db.insert(DeadLetter.__table__)
            .values(
                fingerprint=fingerprint,
                notification_id=notification_id,
                source_queue=source,
                reason=reason,
                attempts=int(
                    message.headers.get("x-tidings-attempts") or (parsed.attempt if parsed else 0)
                ),
                errors=[
                    str(e)
                    for e in (
                        message.headers.get("x-tidings-errors") or (parsed.errors if parsed else [])
                    )
                ],
                payload=message.body,
                headers=headers,
                replay_count=0,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["fingerprint"])
        )
        async with self._db.sessions() as session, session.begin():
            await session.execute(stmt)
        if parsed is not None and notification_id is not None:
            try:
                await self._transitions.record_status(
                    notification_id,
                    parsed.notification_type,
                    Status.FAILED,
                    error=reason,
                    detail="dead-lettered",
                    attempt=parsed.attempt,
                    round_=parsed.round,
                )
            except NotFound:
                log.warning("dead letter for unknown notification %s", notification_id)

    async def search(self, f: DeadLetterFilter) -> tuple[list[DeadLetterOut], PaginationMeta]:
        query = select(DeadLetter)
        if f.source_queue:
            query = query.where(DeadLetter.source_queue == f.source_queue)
        if f.notification_id:
            query = query.where(DeadLetter.notification_id == f.notification_id)
        if f.reason_contains:
            query = query.where(DeadLetter.reason.contains(f.reason_contains, autoescape=True))
        if f.replayed is not None:
            query = query.where(
                DeadLetter.replay_count > 0 if f.replayed else DeadLetter.replay_count == 0
            )
        async with self._db.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = (
                await session.scalars(
                    query.order_by(DeadLetter.id.desc()).offset(f.offset).limit(f.limit)
                )
            ).all()
        return [to_out(r) for r in rows], PaginationMeta.of(total=total, page=f.page, limit=f.limit)

    async def get(self, dead_letter_id: int) -> DeadLetterOut:
        async with self._db.sessions() as session:
            row = await session.get(DeadLetter, dead_letter_id)
        if row is None:
            raise NotFound(f"dead letter {dead_letter_id} not found")
        return to_out(row)

    async def replay(self, request: ReplayRequest) -> list[ReplayResult]:
        """Replay the selected dead letters that have not been replayed yet."""
        chosen = (
            request.dead_letter_ids is not None or request.source_queue or request.reason_contains
        )
        if not chosen and not request.all:
            raise InvalidInput("say which dead letters to replay: ids, a filter, or all=true")
        query = select(DeadLetter).where(DeadLetter.replay_count == 0).order_by(DeadLetter.id)
        if request.dead_letter_ids is not None:
            query = query.where(DeadLetter.id.in_(request.dead_letter_ids))
        if request.source_queue:
            query = query.where(DeadLetter.source_queue == request.source_queue)
        if request.reason_contains:
            query = query.where(
                DeadLetter.reason.contains(request.reason_contains, autoescape=True)
            )
        results: list[ReplayResult] = []
        async with self._db.sessions() as session, session.begin():
            rows = (
                await session.scalars(query.limit(request.limit).with_for_update(skip_locked=True))
            ).all()
            for row in rows:
                outcome, detail = await self._replay_one(session, row)
                session.add(
                    Replay(
                        dead_letter_id=row.id,
                        notification_id=row.notification_id,
                        outcome=outcome,
                        detail=detail,
                        created_at=utcnow(),
                    )
                )
                results.append(
                    ReplayResult(
                        dead_letter_id=row.id,
                        notification_id=row.notification_id,
                        outcome=outcome,
                        detail=detail,
                    )
                )
        if any(r.outcome == "replayed" for r in results):
            self._relay.wake()
        return results

    async def _replay_one(self, session: Any, row: DeadLetter) -> tuple[str, str]:
        carried = read(row.payload)
        if isinstance(carried, StatusEvent):
            return await self._replay_status(row, carried)
        if carried is None and row.notification_id is None:
            return "skipped", "neither a notification message nor a status event"
        message = carried
        n = await session.scalar(
            select(Notification).where(Notification.id == row.notification_id).with_for_update()
        )
        if n is None:
            return "skipped", "its notification no longer exists"
        if n.status == Status.DELIVERED:
            return "skipped", "already delivered"
        if n.status != Status.FAILED:
            return "skipped", f"the notification is {n.status}, not failed"
        if message is None:
            # A message the worker could not even read, but whose notification is known: its
            # work message is built again from the stored notification.
            try:
                message = message_for(n, await self._users.get(n.user_id))
            except NotFound:
                return "skipped", "its user no longer exists"
        now = utcnow()
        n.next_round()
        fresh = message.model_copy(
            update={"round": n.round, "attempt": 1, "errors": [], "first_try_ms": None}
        )
        session.add_all(requeue_rows(n, fresh, f"replayed from dead letter {row.id}", now))
        row.replay_count += 1
        row.replayed_at = now
        return "replayed", f"round {n.round}"

    async def _replay_status(self, row: DeadLetter, event: StatusEvent) -> tuple[str, str]:
        """A status event goes back to status.queue as it was (the consumer records it; a
        report that no longer moves the status is kept in the history)."""
        await self._bus.publish(STATUS_ROUTE, row.payload, message_id=message_id_of(event))
        row.replay_count += 1
        row.replayed_at = utcnow()
        return "replayed", f"status event ({event.status}) published again"
