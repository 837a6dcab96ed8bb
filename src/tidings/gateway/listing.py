"""Listing notifications: filters, newest first, pages. Each selective filter (user,
template, owner, request_id) has an index that starts with it and ends with created_at; status
and channel, a few values each, are read from the created_at index backwards with the filter
(no index on status: status updates stay HOT). A filtered page is an index scan at any size
(tests/gateway/test_listing_plan.py shows the plans at a million rows)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from tidings.gateway.models import Notification
from tidings.gateway.schemas import NotificationFilter


def visible(owner: str | None) -> Select[Any]:
    """The notifications ``owner`` created (None: everyone's): every read and every cancel
    starts here, so none forgets the owner."""
    query = select(Notification)
    return query if owner is None else query.where(Notification.owner == owner)


def filtered(f: NotificationFilter, owner: str | None) -> Select[Any]:
    query = visible(owner)
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
