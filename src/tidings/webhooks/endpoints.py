"""Endpoints as the gateway's API manages them: registered with a URL check (webhooks.urls),
a secret made and shown once, kept sealed (webhooks.secrets); each owner sees only its own
(the admin: everyone's). Messages and attempts are read here; a replay makes messages due
again with a fresh schedule."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

import orjson
from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.core.db import Database, utcnow
from tidings.core.errors import InvalidInput, NotFound
from tidings.core.netguard import Resolver, system_resolver
from tidings.webhooks.events import check_events
from tidings.webhooks.models import (
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    WebhookOutbox,
)
from tidings.webhooks.secrets import SecretBox, new_secret
from tidings.webhooks.urls import check_url


def endpoint_out(e: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "endpoint_id": e.id,
        "owner": e.owner,
        "url": e.url,
        "events": e.events,
        "description": e.description,
        "disabled": e.disabled_at is not None,
        "disabled_reason": e.disabled_reason,
        "failing_since": e.failing_since,
        "last_success_at": e.last_success_at,
        "previous_secret_until": e.previous_until,
        "created_at": e.created_at,
    }
    if secret is not None:
        out["secret"] = secret
    return out


def message_out(m: WebhookMessage, attempts: list[WebhookAttempt] | None = None) -> dict[str, Any]:
    return {
        "webhook_id": m.webhook_id,
        "event_type": m.event_type,
        "state": m.state,
        "attempts": m.attempts,
        "next_attempt_at": m.next_attempt_at if m.state == "pending" else None,
        "last_status": m.last_status,
        "last_error": m.last_error,
        "created_at": m.created_at,
        "delivered_at": m.delivered_at,
        "payload": orjson.loads(m.payload),
        "attempt_log": [
            {
                "at": a.at,
                "status_code": a.status_code,
                "duration_ms": a.duration_ms,
                "error": a.error,
                "response_excerpt": a.response_excerpt,
            }
            for a in attempts or []
        ]
        + success_of(m),
    }


def success_of(m: WebhookMessage) -> list[dict[str, Any]]:
    """The successful attempt, which is written on its message, not as an attempt row
    (migration gateway 0014); none for a message delivered before that, whose row it was."""
    if m.state != "delivered" or m.delivered_duration_ms is None:
        return []
    return [
        {
            "at": m.delivered_at,
            "status_code": m.last_status,
            "duration_ms": m.delivered_duration_ms,
            "error": None,
            "response_excerpt": m.delivered_excerpt,
        }
    ]


async def capture_in(conn: AsyncConnection, events: list[dict[str, Any]]) -> None:
    """Events that are no notification's history row (``user.unsubscribed``,
    ``device.removed``) into the outbox, in the caller's transaction, as the trigger captures
    those: only while some endpoint is enabled. Each: ``{event_type, owner, extra,
    created_at}``."""
    if not events:
        return
    enabled = await conn.scalar(
        select(WebhookEndpoint.id).where(WebhookEndpoint.disabled_at.is_(None)).limit(1)
    )
    if enabled is not None:
        await conn.execute(insert(cast(Table, WebhookOutbox.__table__)), events)


class Endpoints:
    def __init__(
        self,
        db: Database,
        secret_key: str,
        *,
        allow_insecure: bool,
        rotation_grace_s: float,
        resolve: Resolver = system_resolver,
    ) -> None:
        self.db = db
        self.box = SecretBox(secret_key)
        self.allow_insecure = allow_insecure
        self.rotation_grace_s = rotation_grace_s
        self.resolve = resolve

    async def _url(self, url: str) -> str:
        try:
            return await check_url(url, allow_insecure=self.allow_insecure, resolve=self.resolve)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc

    @staticmethod
    def _events(events: list[str]) -> list[str]:
        try:
            return check_events(events)
        except ValueError as exc:
            raise InvalidInput(f"events: {exc}") from exc

    async def create(
        self, owner: str, url: str, events: list[str], description: str
    ) -> dict[str, Any]:
        checked, subscribed = await self._url(url), self._events(events)
        secret, now = new_secret(), utcnow()
        endpoint = WebhookEndpoint(
            id=uuid.uuid4(),
            owner=owner,
            url=checked,
            description=description,
            events=subscribed,
            secret=self.box.seal(secret),
            created_at=now,
            updated_at=now,
        )
        async with self.db.sessions() as session, session.begin():
            session.add(endpoint)
        return endpoint_out(endpoint, secret)

    def _mine(self, owner: str | None) -> Any:
        query = select(WebhookEndpoint)
        return query if owner is None else query.where(WebhookEndpoint.owner == owner)

    async def _get(
        self, session: Any, endpoint_id: uuid.UUID, owner: str | None
    ) -> WebhookEndpoint:
        found = await session.scalar(self._mine(owner).where(WebhookEndpoint.id == endpoint_id))
        if found is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found")
        return found

    async def all(self, owner: str | None) -> list[dict[str, Any]]:
        async with self.db.sessions() as session:
            rows = await session.scalars(self._mine(owner).order_by(WebhookEndpoint.created_at))
            return [endpoint_out(e) for e in rows]

    async def get(self, endpoint_id: uuid.UUID, owner: str | None) -> dict[str, Any]:
        async with self.db.sessions() as session:
            return endpoint_out(await self._get(session, endpoint_id, owner))

    async def update(
        self, endpoint_id: uuid.UUID, owner: str | None, changes: dict[str, Any]
    ) -> dict[str, Any]:
        url = await self._url(changes["url"]) if changes.get("url") is not None else None
        events = self._events(changes["events"]) if changes.get("events") is not None else None
        async with self.db.sessions() as session, session.begin():
            e = await self._get(session, endpoint_id, owner)
            now = utcnow()
            if url is not None:
                e.url = url
            if events is not None:
                e.events = events
            if changes.get("description") is not None:
                e.description = changes["description"]
            if changes.get("disabled") is True and e.disabled_at is None:
                e.disabled_at, e.disabled_reason = now, "disabled by its owner"
            elif changes.get("disabled") is False:
                e.disabled_at, e.disabled_reason, e.failing_since = None, None, None
            e.updated_at = now
        return endpoint_out(e)

    async def delete(self, endpoint_id: uuid.UUID, owner: str | None) -> None:
        async with self.db.sessions() as session, session.begin():
            await session.delete(await self._get(session, endpoint_id, owner))

    async def rotate(self, endpoint_id: uuid.UUID, owner: str | None) -> dict[str, Any]:
        """A new secret; the current one keeps signing beside it for the grace period."""
        secret, now = new_secret(), utcnow()
        async with self.db.sessions() as session, session.begin():
            e = await self._get(session, endpoint_id, owner)
            e.previous_secret, e.secret = e.secret, self.box.seal(secret)
            e.previous_until = now + dt.timedelta(seconds=self.rotation_grace_s)
            e.updated_at = now
        return endpoint_out(e, secret)

    async def messages(
        self, endpoint_id: uuid.UUID, owner: str | None, state: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        async with self.db.sessions() as session:
            await self._get(session, endpoint_id, owner)
            query = select(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint_id)
            if state is not None:
                query = query.where(WebhookMessage.state == state)
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            rows = list(
                await session.scalars(
                    query.order_by(WebhookMessage.id.desc()).offset(offset).limit(limit)
                )
            )
            attempts = await self._attempts(session, [m.id for m in rows])
            return [message_out(m, attempts.get(m.id, [])) for m in rows], int(total or 0)

    async def for_notification(self, notification_id: uuid.UUID) -> list[dict[str, Any]]:
        """Every webhook message about one notification (every endpoint's, oldest first),
        each with its endpoint's URL and its attempts: a notification's story (one range
        scan of ix_webhook_messages_notification, one look-up of the attempts)."""
        async with self.db.sessions() as session:
            rows = list(
                (
                    await session.execute(
                        select(WebhookMessage, WebhookEndpoint.url)
                        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
                        .where(WebhookMessage.notification_id == notification_id)
                        .order_by(WebhookMessage.id)
                    )
                ).all()
            )
            attempts = await self._attempts(session, [m.id for m, _ in rows])
        return [
            message_out(m, attempts.get(m.id, [])) | {"endpoint_id": m.endpoint_id, "url": url}
            for m, url in rows
        ]

    async def _attempts(self, session: Any, ids: list[int]) -> dict[int, list[WebhookAttempt]]:
        found: dict[int, list[WebhookAttempt]] = {}
        if ids:
            for a in await session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.message_id.in_(ids))
                .order_by(WebhookAttempt.id)
            ):
                found.setdefault(a.message_id, []).append(a)
        return found

    async def replay(
        self,
        endpoint_id: uuid.UUID,
        owner: str | None,
        webhook_id: str | None,
        since: dt.datetime | None,
    ) -> int:
        """Make one message (any state) or every failed one created since ``since`` due now,
        with a fresh schedule; returns how many."""
        if (webhook_id is None) == (since is None):
            raise InvalidInput("name either webhook_id or since")
        async with self.db.sessions() as session, session.begin():
            await self._get(session, endpoint_id, owner)
            query = update(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint_id)
            if webhook_id is not None:
                query = query.where(WebhookMessage.webhook_id == webhook_id)
            else:
                query = query.where(
                    WebhookMessage.state == "failed", WebhookMessage.created_at >= since
                )
            # A delivered message's success becomes an attempt row first: its columns are
            # the next success's (0014), and the log keeps every attempt.
            succeeded = (
                select(
                    WebhookMessage.id,
                    WebhookMessage.endpoint_id,
                    WebhookMessage.delivered_at,
                    WebhookMessage.last_status,
                    WebhookMessage.delivered_duration_ms,
                    WebhookMessage.delivered_excerpt,
                )
                .where(WebhookMessage.endpoint_id == endpoint_id)
                .where(WebhookMessage.state == "delivered")
                .where(WebhookMessage.delivered_duration_ms.is_not(None))
            )
            if webhook_id is not None:
                await session.execute(
                    insert(WebhookAttempt).from_select(
                        [
                            "message_id",
                            "endpoint_id",
                            "at",
                            "status_code",
                            "duration_ms",
                            "response_excerpt",
                        ],
                        succeeded.where(WebhookMessage.webhook_id == webhook_id),
                    )
                )
            done = await session.execute(
                query.values(
                    state="pending",
                    attempts=0,
                    next_attempt_at=utcnow(),
                    delivered_duration_ms=None,
                    delivered_excerpt=None,
                )
            )
            count = int(done.rowcount)  # type: ignore[attr-defined]
        if webhook_id is not None and count == 0:
            raise NotFound(f"webhook message {webhook_id} not found")
        return count

    async def capture(self, event_type: str, owner: str, data: dict[str, Any]) -> None:
        """An event that is no notification's history row (``user.unsubscribed``)."""
        event = {"event_type": event_type, "owner": owner, "extra": data, "created_at": utcnow()}
        async with self.db.engine.begin() as conn:
            await capture_in(conn, [event])
