"""Accepting notifications: one path for one and for many (a single notification is a
batch of one). Each is checked on its own; repeats of a request_id answer what it made; the
accepted ones are written by group commit, with ON CONFLICT on (owner, request_id), so a
request_id two requests race for is written once and the other answers as a repeat."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, select

from tidings.core import jsons
from tidings.core.batching import Batcher
from tidings.core.bulk import Linked, column_values, insert_linked, loaded
from tidings.core.db import Database, again_if_lost
from tidings.core.errors import Conflict, InvalidInput, TidingsError
from tidings.core.limits import check_text
from tidings.core.logs import current_correlation_id
from tidings.core.lookups import TemplateDirectory
from tidings.core.metrics import NOTIFICATIONS, child
from tidings.core.status import TERMINAL, Status
from tidings.core.topology import route_for
from tidings.gateway.lookups import UserDirectory
from tidings.gateway.models import Notification, NotificationEvent, OutboxMessage, message_for
from tidings.gateway.preferences import Decision, PreferenceRules
from tidings.gateway.relay import OutboxRelay, Written
from tidings.gateway.schemas import NotificationAccepted, NotificationCreate
from tidings.gateway.suppressions import Suppressions
from tidings.gateway.transitions import log_change


def body_hash(body: NotificationCreate) -> str:
    canonical = jsons.dumps(body.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical).hexdigest()


def accepted(n: Notification) -> NotificationAccepted:
    """The answer to the request that created ``n``, the same every time it is repeated."""
    return NotificationAccepted(
        notification_id=n.id,
        request_id=n.request_id,
        status=Status.SKIPPED if n.status == Status.SKIPPED else Status.PENDING,
        notification_type=n.notification_type,
        created_at=n.created_at,
    )


@dataclass(frozen=True)
class Outcome:
    """What became of one notification handed in: the notification it made or repeats
    (None if the one it repeats was refused), or why it was refused."""

    notification: Notification | None = None
    repeated: bool = False
    error: TidingsError | None = None


def _repeat(existing: Notification, digest: str) -> Outcome:
    if existing.body_hash != digest:
        return Outcome(error=_reused(existing.request_id))
    return Outcome(existing, repeated=True)


def _accepted_change(n: Notification) -> None:
    """Counted as every status change is; logged only when it is already final (skipped):
    one log line per notification, at its final state, written by the status recording
    otherwise (docs/performance.md)."""
    if n.status in TERMINAL:
        log_change(n)
    else:
        child(NOTIFICATIONS, n.notification_type, n.status).inc()


def _reused(request_id: str) -> Conflict:
    return Conflict(f"request_id {request_id!r} was already used with a different body")


class Acceptance:
    """Accepts notifications: validates what the schemas cannot (the user, the template,
    the preference, suppression, the per-recipient limit), de-duplicates on request_id per
    owner, and writes each notification with its history entry and outbox row in one
    transaction, shared by concurrent requests (core.batching)."""

    def __init__(
        self,
        db: Database,
        users: UserDirectory,
        templates: TemplateDirectory,
        relay: OutboxRelay,
        suppressions: Suppressions,
        limit_recipient: Callable[[uuid.UUID], Awaitable[None]],
        priority_lane_min: int,
    ) -> None:
        self._db = db
        self._users = users
        self._templates = templates
        self._relay = relay
        self._suppressions = suppressions
        self._limit_recipient = limit_recipient
        self._priority_lane_min = priority_lane_min
        self.rules = PreferenceRules(priority_lane_min)  # preferences, categories, quiet hours
        # Group commit (core.batching): concurrent requests share one query or transaction.
        self._finds: Batcher[tuple[str, str], Notification | None] = Batcher(self._find_many)
        self._writes: Batcher[list[Any], bool] = Batcher(self._write_many)
        # The statements of the hot path, built once (SQLAlchemy caches their compiled
        # form; building them cost more than that look-up, per batch).
        self._table = cast(Table, Notification.__table__)
        self._events = cast(Table, NotificationEvent.__table__)
        self._outbox = cast(Table, OutboxMessage.__table__)
        # Core: a session cost more than the statement; a repeat's row made one (loaded).
        self._by_ids = select(self._table).where(
            self._table.c.request_id.in_(bindparam("request_ids", expanding=True)),
            self._table.c.owner.in_(bindparam("owners", expanding=True)),
        )

    async def accept(
        self, body: NotificationCreate, owner: str
    ) -> tuple[NotificationAccepted, bool]:
        """Store the notification and its outgoing message in one transaction.

        Returns the answer and whether it repeats an earlier request of ``owner`` with the
        same id (another owner's ids are not seen: each client has its own).
        """
        [outcome] = await self.accept_many([body], owner)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.notification is not None  # a lone request repeats nothing refused
        return accepted(outcome.notification), outcome.repeated

    async def accept_many(self, bodies: list[NotificationCreate], owner: str) -> list[Outcome]:
        """One outcome per body, in order. ``owner``: the client they belong to (its request
        ids are its own). A request_id twice among ``bodies``: the first is accepted, the
        others repeat it. One look-up per distinct user and template, however many share it.
        """
        digests = [body_hash(b) for b in bodies]
        found = await asyncio.gather(
            *(self._by_request_id(owner, b.request_id) for b in bodies), return_exceptions=True
        )
        outcomes: list[Outcome | None] = [None] * len(bodies)
        first: dict[str, int] = {}
        for i, (body, existing) in enumerate(zip(bodies, found, strict=True)):
            if isinstance(existing, InvalidInput):  # a request_id PostgreSQL cannot take
                outcomes[i] = Outcome(error=existing)
            elif isinstance(existing, BaseException):  # an outage fails the whole request
                raise existing
            elif existing is not None:
                outcomes[i] = _repeat(existing, digests[i])
            elif body.request_id not in first:
                first[body.request_id] = i
        fresh = list(first.values())
        built = await self._build_all(bodies, digests, fresh, owner, outcomes)
        written = await asyncio.gather(*(self._writes.submit(rows) for _, rows in built))
        for (i, rows), ok in zip(built, written, strict=True):
            if ok:
                _accepted_change(rows[0])
                outcomes[i] = Outcome(rows[0])
                continue
            # Another request with this request_id won the race: answer as a repeat.
            existing = await self._by_request_id(owner, bodies[i].request_id)
            outcomes[i] = (
                Outcome(
                    error=Conflict(
                        f"request_id {bodies[i].request_id!r} is being used; send it again"
                    )
                )
                if existing is None
                else _repeat(existing, digests[i])
            )
        for i, body in enumerate(bodies):
            if outcomes[i] is None:  # a later use of a request_id first seen among bodies
                origin = outcomes[first[body.request_id]]
                assert origin is not None
                same = digests[i] == digests[first[body.request_id]]
                outcomes[i] = (
                    Outcome(origin.notification, repeated=True)
                    if same
                    else Outcome(error=_reused(body.request_id))
                )
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(bodies), "an outcome for every body"
        return done

    async def _build_all(
        self,
        bodies: list[NotificationCreate],
        digests: list[str],
        fresh: list[int],
        owner: str,
        outcomes: list[Outcome | None],
    ) -> list[tuple[int, list[Any]]]:
        """The rows of each new notification; a refused one gets its outcome instead."""
        keys = {
            i: (bodies[i].user_id, bodies[i].template_code, bodies[i].notification_type)
            for i in fresh
        }
        distinct = {key: i for i, key in keys.items()}
        looked = dict(
            zip(
                distinct,
                await asyncio.gather(
                    *(self.lookups(bodies[i]) for i in distinct.values()), return_exceptions=True
                ),
                strict=True,
            )
        )
        built: list[tuple[int, list[Any]]] = []
        for i in fresh:
            found = looked[keys[i]]
            if isinstance(found, BaseException) and not isinstance(found, TidingsError):
                raise found
            try:
                if isinstance(found, TidingsError):
                    raise found
                user, template = found
                decision = await self.admit(bodies[i], user, template)
            except TidingsError as exc:
                outcomes[i] = Outcome(error=exc)
                continue
            built.append((i, self.build(bodies[i], digests[i], user, template, decision, owner)))
        return built

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
            async with self._db.autocommit.connect() as conn:
                rows = await conn.execute(
                    self._by_ids,
                    {
                        "request_ids": list({r for _, r in wanted}),
                        "owners": list({o for o, _ in wanted}),
                    },
                )
                found = {
                    (n.owner, n.request_id): n for n in (loaded(Notification, r) for r in rows)
                }
        return [refused[k] if k in refused else found.get(k) for k in keys]

    async def _write_many(self, items: list[list[Any]]) -> list[bool]:
        """Each item: a notification and the rows that go with it (``build``), written
        together, all or nothing (core.bulk.insert_linked); one whose request_id is taken
        (by an earlier item, or another request) writes nothing and answers False. The
        outbox rows written are handed to the relay, to be published without being read
        back. Sent again if its connection was lost (a failover): safe by the request id."""
        return await again_if_lost(lambda: self._write_once(items))

    async def _write_once(self, items: list[list[Any]]) -> list[bool]:
        followers = [r for rows in items for r in rows[1:]]
        messages = [column_values(r) for r in followers if isinstance(r, OutboxMessage)]
        inserted, [message_ids] = await insert_linked(
            self._db,
            self._table,
            [column_values(rows[0]) for rows in items],
            conflict=("owner", "request_id"),
            linked=[
                Linked(
                    self._events,
                    "notification_id",
                    [column_values(r) for r in followers if isinstance(r, NotificationEvent)],
                ),
                Linked(self._outbox, "notification_id", messages, returning="id"),
            ],
        )
        handed = [
            Written(id=message_ids[m["notification_id"]], **m)
            for m in messages
            if m["notification_id"] in message_ids
            and m["available_at"] <= m["created_at"]  # a scheduled one waits its time
        ]
        if handed:
            self._relay.hand(handed)
        return [rows[0].id in inserted for rows in items]

    async def lookups(self, body: NotificationCreate) -> tuple[dict[str, Any], dict[str, Any]]:
        """The user and the template version (NotFound if either is unknown)."""
        user = await self._users.get(body.user_id)
        language = user.get("language", "en")
        template = await self._templates.get(body.template_code, body.notification_type, language)
        return user, template

    async def admit(
        self, body: NotificationCreate, user: dict[str, Any], template: dict[str, Any]
    ) -> Decision:
        """Whether it goes, is skipped or waits (gateway.preferences), after the suppression
        list and the per-recipient rate limit (a skipped notification sends nothing: not
        counted)."""
        channel = body.notification_type
        decision = self.rules.decide(channel, user, template, body.priority, body.send_at)
        if decision.skip is not None:
            return decision
        if channel == "email" and user.get("email"):
            suppressed = await self._suppressions.reason_for(user["email"])
            if suppressed is not None:
                return Decision(skip=f"the address is suppressed ({suppressed})")
        await self._limit_recipient(body.user_id)
        return decision

    def build(
        self,
        body: NotificationCreate,
        digest: str,
        user: dict[str, Any],
        template: dict[str, Any],
        decision: Decision,
        owner: str,
    ) -> list[Any]:
        """The notification, its first history entry and (unless skipped) its outbox row.
        ``owner``: the client it belongs to (router.owner_of)."""
        channel = body.notification_type
        now = self.rules.clock()  # utcnow but in tests (gateway.preferences)
        skip_reason = decision.skip
        send_at = decision.hold_until or body.send_at  # quiet hours: held until they end
        scheduled = send_at is not None and send_at > now
        status = (
            Status.SKIPPED if skip_reason else Status.SCHEDULED if scheduled else Status.PENDING
        )
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
        detail = (
            skip_reason
            or decision.reason
            or (f"scheduled for {send_at:%Y-%m-%dT%H:%M:%SZ}" if scheduled else "accepted")
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
                    routing_key=route_for(channel, body.priority, self._priority_lane_min),
                    payload=message.dumps(),
                    correlation_id=correlation,
                    created_at=now,
                    available_at=send_at if scheduled else now,
                )
            )
        return rows
