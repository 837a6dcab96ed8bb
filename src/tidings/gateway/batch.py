"""Batches: up to 1,000 notifications in one request, each checked on its own, the accepted
ones written in one transaction, idempotent per item."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tidings.core.errors import TidingsError
from tidings.gateway.models import Notification
from tidings.gateway.schemas import BatchItemResult, NotificationCreate
from tidings.gateway.service import NotificationService, body_hash


def _invalid(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


async def accept_batch(
    service: NotificationService, items: list[dict[str, Any]], owner: str = "admin"
) -> list[BatchItemResult]:
    """``owner``: the client the notifications belong to; its request ids are its own."""
    results: list[BatchItemResult | None] = [None] * len(items)
    bodies: dict[int, NotificationCreate] = {}
    for i, raw in enumerate(items):
        try:
            bodies[i] = NotificationCreate.model_validate(raw)
        except ValidationError as exc:
            rid = raw.get("request_id") if isinstance(raw, dict) else None
            results[i] = BatchItemResult(
                index=i,
                request_id=rid if isinstance(rid, str) else None,
                outcome="rejected",
                error=_invalid(exc),
            )
    for _ in range(2):  # a second pass only if a concurrent request took a request_id
        try:
            return await _accept(service, bodies, results, owner)
        except IntegrityError:
            continue
    raise TidingsError("the batch kept racing with other requests; send it again")


async def _accept(
    service: NotificationService,
    bodies: dict[int, NotificationCreate],
    results: list[BatchItemResult | None],
    owner: str,
) -> list[BatchItemResult]:
    results = list(results)
    digests = {i: body_hash(b) for i, b in bodies.items()}
    async with service.db.sessions() as session:
        known = {
            n.request_id: n
            for n in await session.scalars(
                select(Notification).where(
                    Notification.owner == owner,
                    Notification.request_id.in_({b.request_id for b in bodies.values()}),
                )
            )
        }
    first: dict[str, int] = {}
    fresh: list[int] = []
    for i, body in bodies.items():
        seen = known.get(body.request_id)
        if seen is not None:
            results[i] = _repeat(i, body, seen.body_hash == digests[i], seen.id, seen.status)
        elif body.request_id in first:
            same = digests[first[body.request_id]] == digests[i]
            results[i] = _repeat(i, body, same, None, None)
        else:
            first[body.request_id] = i
            fresh.append(i)

    # One look-up per distinct (user, template, channel), however many items share it.
    keys = {
        i: (bodies[i].user_id, bodies[i].template_code, bodies[i].notification_type) for i in fresh
    }
    distinct = {key: i for i, key in keys.items()}
    found_by_key = dict(
        zip(
            distinct,
            await asyncio.gather(
                *(service.lookups(bodies[i]) for i in distinct.values()), return_exceptions=True
            ),
            strict=True,
        )
    )
    lookups = [found_by_key[keys[i]] for i in fresh]
    rows: list[Any] = []
    built: dict[int, Notification] = {}
    for i, found in zip(fresh, lookups, strict=True):
        if isinstance(found, TidingsError):
            results[i] = BatchItemResult(
                index=i, request_id=bodies[i].request_id, outcome="rejected", error=found.message
            )
            continue
        if isinstance(found, BaseException):
            raise found
        user, template = found
        try:
            skip_reason = await service.admit(bodies[i], user)
        except TidingsError as exc:
            results[i] = BatchItemResult(
                index=i, request_id=bodies[i].request_id, outcome="rejected", error=exc.message
            )
            continue
        notification, item_rows = service.build(
            bodies[i], digests[i], user, template, skip_reason, owner
        )
        built[i] = notification
        rows.extend(item_rows)
    if rows:
        async with service.db.sessions() as session:
            session.add_all(rows)
            await session.commit()
        service.relay.wake()
    for i, n in built.items():
        results[i] = BatchItemResult(
            index=i,
            request_id=n.request_id,
            outcome="accepted",
            notification_id=n.id,
            status=n.status,
        )
    # The duplicates of a request_id first seen in this batch point at what it became.
    for i, r in enumerate(results):
        if r is not None and r.outcome == "duplicate" and r.notification_id is None:
            origin = built.get(first[r.request_id or ""])
            if origin is not None:
                results[i] = r.model_copy(
                    update={"notification_id": origin.id, "status": origin.status}
                )
    return [r for r in results if r is not None]


def _repeat(
    i: int, body: NotificationCreate, same: bool, nid: uuid.UUID | None, status: str | None
) -> BatchItemResult:
    if same:
        return BatchItemResult(
            index=i,
            request_id=body.request_id,
            outcome="duplicate",
            notification_id=nid,
            status=status,
        )
    return BatchItemResult(
        index=i,
        request_id=body.request_id,
        outcome="rejected",
        error=f"request_id {body.request_id!r} was already used with a different body",
    )
