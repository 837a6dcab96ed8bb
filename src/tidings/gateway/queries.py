"""Reading notifications: one with its history, and pages of them."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from tidings.core.db import Database
from tidings.core.envelope import PaginationMeta
from tidings.core.errors import NotFound
from tidings.gateway.listing import filtered, page_query, visible
from tidings.gateway.models import Notification, NotificationEvent
from tidings.gateway.schemas import NotificationFilter, NotificationOut, NotificationSummary


class NotificationQueries:
    """The notifications a caller may see. ``owner`` everywhere: only the notifications that
    client created (another's is not found, as a missing one); None: anyone's."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, notification_id: uuid.UUID, owner: str | None) -> NotificationOut:
        """The notification and its history."""
        return (await self.get_with_row(notification_id, owner))[1]

    async def get_with_row(
        self, notification_id: uuid.UUID, owner: str | None
    ) -> tuple[Notification, NotificationOut]:
        """:meth:`get`, and the row it was read from (the dashboard's story shows columns
        the API does not: one read for both)."""
        async with self._db.sessions() as session:
            n = await session.scalar(visible(owner).where(Notification.id == notification_id))
            if n is None:
                raise NotFound(f"notification {notification_id} not found")
            events = (
                await session.scalars(
                    select(NotificationEvent)
                    .where(NotificationEvent.notification_id == notification_id)
                    .order_by(NotificationEvent.created_at, NotificationEvent.id)
                )
            ).all()
        return n, NotificationOut(
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

    async def search(
        self, f: NotificationFilter, owner: str | None
    ) -> tuple[list[NotificationSummary], PaginationMeta]:
        """A page, newest first, and how many match in all."""
        async with self._db.sessions() as session:
            counted = select(func.count()).select_from(filtered(f, owner).subquery())
            total = await session.scalar(counted) or 0
            rows = (await session.scalars(page_query(f, owner))).all()
        items = [
            NotificationSummary(
                notification_id=n.id,
                request_id=n.request_id,
                user_id=n.user_id,
                notification_type=n.notification_type,
                template_code=n.template_code,
                priority=n.priority,
                status=n.status,
                error=n.error,
                created_at=n.created_at,
                updated_at=n.updated_at,
            )
            for n in rows
        ]
        return items, PaginationMeta.of(total=total, page=f.page, limit=f.limit)

    async def counts(self) -> dict[str, int]:
        """How many notifications are in each status (the dashboard's overview)."""
        async with self._db.sessions() as session:
            rows = (
                await session.execute(
                    select(Notification.status, func.count()).group_by(Notification.status)
                )
            ).all()
        return {str(status): int(n) for status, n in rows}
