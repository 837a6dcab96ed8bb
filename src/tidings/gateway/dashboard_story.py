"""Finding notifications and telling one's story.

The list filters by status, channel, template, recipient address, request id and time range,
newest first, a page at a time by keyset (``before``: the last row's created_at and id), so
a page is one range scan of a listing index at any size (gateway.listing). Each row shows its
recipient's address (one batch look-up at the users service per page).

A notification's story: its recipient (name and address), its ids (request, correlation),
its timeline from the history (accepted, queued, each attempt with the server's reply or the
error, each retry with its delay, the end), its dead letters, its webhook deliveries (each
message to each endpoint with its attempts: status code, duration, answer excerpt; delivered,
failed or the next retry) and the email as sent."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy import Select, and_, or_, select

from tidings.core.errors import NotFound, TidingsError, describe_errors
from tidings.core.status import Status
from tidings.gateway.dashboard_base import HEADERS, JsonSession, Session, _page, dashboard_router
from tidings.gateway.dependencies import State
from tidings.gateway.listing import filtered
from tidings.gateway.models import DeadLetter, Notification, Suppression
from tidings.gateway.pages import env
from tidings.gateway.schemas import NotificationFilter
from tidings.gateway.state import GatewayState

router = dashboard_router()

PAGE = 50
FIELDS = ("status", "channel", "template", "address", "request_id", "user_id", "after", "until")


async def users_by(
    state: GatewayState, ids: list[uuid.UUID], emails: list[str]
) -> list[Any] | None:
    """Users by id and by address in one call to the users service (None: it did not
    answer)."""
    if not ids and not emails:
        return []
    body = {"user_ids": [str(i) for i in set(ids)], "emails": emails}
    try:
        return list(await state.users_client.post("/api/v1/users/lookup/", body) or [])
    except TidingsError:
        return None


def _cursor(raw: str) -> tuple[dt.datetime, uuid.UUID] | None:
    at, _, nid = raw.partition("_")
    try:
        return dt.datetime.fromisoformat(at), uuid.UUID(nid)
    except ValueError:
        return None


def _time(raw: str) -> dt.datetime | None:
    """A datetime-local field's value (or an ISO timestamp), read as UTC."""
    if not raw.strip():
        return None
    at = dt.datetime.fromisoformat(raw.strip())
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def keyset_page(
    f: NotificationFilter, cursor: tuple[dt.datetime, uuid.UUID] | None, limit: int
) -> Select[Any]:
    """The page after ``cursor`` (the last row's created_at and id), newest first: a range
    scan of the filter's listing index, however deep the page (tests/dashboard/
    test_keyset_plan.py)."""
    query = filtered(f, None)
    if cursor is not None:
        at, nid = cursor
        query = query.where(
            # The first condition bounds the index range; the second breaks ties on id.
            Notification.created_at <= at,
            or_(
                Notification.created_at < at,
                and_(Notification.created_at == at, Notification.id < nid),
            ),
        )
    return query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)


@dataclass
class Found:
    items: list[dict[str, Any]]
    next_cursor: str | None
    error: str | None


async def find(state: GatewayState, q: dict[str, str], before: str) -> Found:
    """A page of the notifications matching the form ``q``, newest first, before ``before``."""
    if q["user_id"]:
        try:
            uuid.UUID(q["user_id"])
        except ValueError:
            return Found([], None, f"{q['user_id']!r} is not a user id (a UUID).")
    try:
        user_id = q["user_id"] or None
        if q["address"]:
            found = await users_by(state, [], [q["address"]])
            if found is None:
                return Found([], None, "The users service did not answer: no look-up by address.")
            if not found:
                return Found([], None, f"No user has the address {q['address']!r}.")
            if user_id is not None and user_id != str(found[0]["user_id"]):
                return Found([], None, None)
            user_id = str(found[0]["user_id"])
        f = NotificationFilter(
            limit=PAGE,
            status=q["status"] or None,
            notification_type=q["channel"] or None,
            template_code=q["template"] or None,
            request_id=q["request_id"] or None,
            user_id=user_id,
            created_after=_time(q["after"]),
            created_before=_time(q["until"]),
        )
    except ValidationError as exc:
        return Found([], None, describe_errors(exc.errors()))
    except ValueError as exc:
        return Found([], None, f"Not a time: {exc}")
    query = keyset_page(f, _cursor(before) if before else None, PAGE + 1)
    async with state.db.sessions() as session:
        rows = list((await session.scalars(query)).all())
    more, rows = len(rows) > PAGE, rows[:PAGE]
    known = await users_by(state, [n.user_id for n in rows], []) or []
    users = {str(u["user_id"]): u for u in known}
    items = [_row(n, users.get(str(n.user_id))) for n in rows]
    last = rows[-1] if more else None
    next_cursor = f"{last.created_at.isoformat()}_{last.id}" if last else None
    return Found(items, next_cursor, None)


def _row(n: Notification, user: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "notification_id": str(n.id),
        "request_id": n.request_id,
        "user_id": str(n.user_id),
        "address": (user or {}).get("email") or "",
        "name": (user or {}).get("name") or "",
        "channel": n.notification_type,
        "template_code": n.template_code,
        "status": n.status,
        "error": n.error,
        "created_at": n.created_at,
    }


@router.get("/notifications/")
async def notifications(
    state: State, token: Session, request: Request, before: str = ""
) -> Response:
    q = {name: request.query_params.get(name, "").strip() for name in FIELDS}
    found = await find(state, q, before)
    more = None
    if found.next_cursor:
        after = request.url.include_query_params(before=found.next_cursor)
        more = f"{after.path}?{after.query}"
    return _page(
        "notifications.html",
        token,
        nav="notifications",
        items=found.items,
        q=q,
        statuses=[s.value for s in Status if s != Status.QUEUED],
        error=found.error,
        more=more,
        first_page=not before,
    )


# --- one notification's story ------------------------------------------------------------


def _steps(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history entries as the timeline tells them: what kind of step, when (UTC), and
    how long after the notification was accepted."""
    steps = []
    first: dt.datetime | None = None
    for e in history:
        at = dt.datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00"))
        first = first or at
        detail = e.get("detail") or ""
        kind = "retry" if detail.startswith("retry in ") else e["status"]
        after = (at - first).total_seconds()
        steps.append(
            e
            | {
                "kind": kind,
                "when": at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d} UTC",
                "after": f"+{after:.3f} s" if after < 60 else f"+{after / 60:.1f} min",
            }
        )
    return steps


def _utc(at: dt.datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else ""


def _deliveries(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The notification's webhook messages as the story tells them (JSON-safe: the story's
    JSON carries them too)."""
    return [
        {
            "webhook_id": m["webhook_id"],
            "endpoint_id": str(m["endpoint_id"]),
            "url": m["url"],
            "event_type": m["event_type"],
            "state": m["state"],
            "attempts": m["attempts"],
            "created_at": _utc(m["created_at"]),
            "delivered_at": _utc(m["delivered_at"]),
            "next_attempt_at": _utc(m["next_attempt_at"]),
            "last_error": m["last_error"],
            "attempt_log": [
                {
                    "at": _utc(a["at"]),
                    "status_code": a["status_code"],
                    "duration_ms": round(a["duration_ms"], 1),
                    "error": a["error"],
                    "excerpt": (a["response_excerpt"] or "")[:200],
                }
                for a in m["attempt_log"]
            ],
        }
        for m in messages
    ]


async def story(state: GatewayState, notification_id: str) -> dict[str, Any] | None:
    try:
        nid = uuid.UUID(notification_id)
        row, found = await state.queries.get_with_row(nid, None)
    except (ValueError, NotFound):
        return None
    n = found.model_dump(mode="json")
    async with state.db.sessions() as session:
        letters = (
            await session.scalars(
                select(DeadLetter).where(DeadLetter.notification_id == nid).order_by(DeadLetter.id)
            )
        ).all()
    users = await users_by(state, [found.user_id], []) or []
    recipient = users[0] if users else None
    n["correlation_id"] = row.correlation_id
    n["round"] = row.round
    n["steps"] = _steps(n["history"])
    n["dead_letters"] = [
        {
            "id": d.id,
            "reason": d.reason,
            "replayed": bool(d.replay_count),
            "at": d.created_at.isoformat(),
        }
        for d in letters
    ]
    n["webhooks"] = _deliveries(await state.webhook_endpoints.for_notification(nid))
    n["recipient"] = {
        "name": (recipient or {}).get("name") or "",
        "address": (recipient or {}).get("email") or "",
        "push": bool((recipient or {}).get("push_token")),
        "known": recipient is not None,
    }
    return n


@router.get("/notifications/{notification_id}")
async def story_page(
    state: State, token: Session, notification_id: str, done: str = "", failed: str = ""
) -> Response:
    n = await story(state, notification_id)
    if n is None:
        return _page("error.html", token, 404, message=f"No notification {notification_id}.")
    suppressed = None
    if n["recipient"]["address"]:  # read now, not from the accept path's short cache
        async with state.db.sessions() as session:
            row = await session.get(Suppression, n["recipient"]["address"].lower())
            suppressed = f"{row.source}: {row.reason}" if row else None
    return _page(
        "timeline.html",
        token,
        nav="notifications",
        n=n,
        suppressed=suppressed,
        flash=done[:300] or None,
        problem=failed[:300] or None,
    )


@router.get("/api/notifications/{notification_id}")
async def story_json(state: State, _: JsonSession, notification_id: str) -> Response:
    n = await story(state, notification_id)
    if n is None:
        return JSONResponse({"error": "not found"}, 404, headers=HEADERS)
    fragment = env.get_template("_timeline.html").render(n=n)
    return JSONResponse({"data": n, "replace": {"timeline": fragment}}, headers=HEADERS)
