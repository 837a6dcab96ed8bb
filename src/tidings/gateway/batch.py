"""Batches: up to 1,000 notifications in one request, each validated and checked on its own,
accepted through the same path as a single one (gateway.accept), idempotent per item."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from tidings.core.errors import describe_errors
from tidings.gateway.accept import Acceptance, Outcome
from tidings.gateway.schemas import BatchItemResult, NotificationCreate


def _result(i: int, body: NotificationCreate, outcome: Outcome) -> BatchItemResult:
    if outcome.error is not None:
        return BatchItemResult(
            index=i, request_id=body.request_id, outcome="rejected", error=outcome.error.message
        )
    n = outcome.notification
    return BatchItemResult(
        index=i,
        request_id=body.request_id,
        outcome="duplicate" if outcome.repeated else "accepted",
        notification_id=n.id if n is not None else None,
        status=n.status if n is not None else None,
    )


async def accept_batch(
    acceptance: Acceptance, items: list[dict[str, Any]], owner: str
) -> list[BatchItemResult]:
    """A result per item, in order. ``owner``: the client the notifications belong to; its
    request ids are its own."""
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
                error=describe_errors(exc.errors()),
            )
    outcomes = await acceptance.accept_many(list(bodies.values()), owner)
    for (i, body), outcome in zip(bodies.items(), outcomes, strict=True):
        results[i] = _result(i, body, outcome)
    return [r for r in results if r is not None]
