"""Listing notifications: filters, newest first, pages. Each filter has an index that
starts with it and ends with created_at, so a filtered page is an index scan at any size
(tests/gateway/test_listing_plan.py shows the plans at a million rows)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select

from tidings.core.db import Database
from tidings.core.envelope import PaginationMeta
from tidings.gateway.models import Notification
from tidings.gateway.schemas import NotificationFilter, NotificationSummary


def filtered(f: NotificationFilter, owner: str | None = None) -> Select[Any]:
    """``owner``: only the notifications it created (None: everyone's)."""
    query = select(Notification)
    if owner is not None:
        query = query.where(Notification.owner == owner)
    for column, value in (
        (Notification.status, f.status),
        (Notification.notification_type, f.notification_type),
        (Notification.user_id, f.user_id),
        (Notification.template_code, f.template_code),
        (Notification.request_id, f.request_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if f.created_after is not None:
        query = query.where(Notification.created_at >= f.created_after)
    if f.created_before is not None:
        query = query.where(Notification.created_at < f.created_before)
    return query


def page_query(f: NotificationFilter, owner: str | None = None) -> Select[Any]:
    return (
        filtered(f, owner)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .offset(f.offset)
        .limit(f.limit)
    )


async def search(
    db: Database, f: NotificationFilter, owner: str | None = None
) -> tuple[list[NotificationSummary], PaginationMeta]:
    async with db.sessions() as session:
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
