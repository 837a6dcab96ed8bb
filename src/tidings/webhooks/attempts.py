"""What the webhooks worker passes between its store (webhooks.store), its sender and its
loops: a message claimed for an attempt, the attempt's outcome, what it leaves, and the
fan-out's room to claim as it writes and what it did."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Claimed:
    """A message claimed for one attempt, with what its endpoint needs to send it."""

    id: int
    endpoint_id: uuid.UUID
    webhook_id: str
    payload: bytes
    attempts: int
    created_at: dt.datetime
    lease_until: dt.datetime  # the claim's next_attempt_at: the lease is ours while it is this


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    status_code: int | None
    duration_ms: float
    error: str | None
    excerpt: str | None


@dataclass(frozen=True)
class Settled:
    """What an attempt leaves: its outcome and the message's next state."""

    message: Claimed
    outcome: Outcome
    state: str  # pending (a retry at next_at) | delivered | failed
    next_at: dt.datetime | None
    success: bool


@dataclass(frozen=True)
class Room:
    """How many messages a fan-out may claim as it writes them: at most ``per_endpoint[e]``
    for endpoint ``e`` (``default`` for one not named), ``limit`` in all, each leased for
    ``lease_s``; the same bounds as :meth:`WebhookStore.claim`'s."""

    per_endpoint: dict[uuid.UUID, int]
    default: int
    limit: int
    lease_s: float

    def take(self, messages: list[dict[str, Any]], now: dt.datetime) -> dict[str, dt.datetime]:
        """Leases the messages there is room for (their ``next_attempt_at`` set to the
        lease's end, in place); returns each leased message's webhook_id and lease end."""
        lease_until = now + dt.timedelta(seconds=self.lease_s)
        leased: dict[str, dt.datetime] = {}
        held: Counter[uuid.UUID] = Counter()
        for m in messages:
            if len(leased) >= self.limit:
                break
            e = m["endpoint_id"]
            if held[e] < self.per_endpoint.get(e, self.default):
                held[e] += 1
                m["next_attempt_at"] = lease_until
                leased[m["webhook_id"]] = lease_until
        return leased


@dataclass(frozen=True)
class FannedOut:
    """What a fan-out did: events taken from the outbox, messages written, those of them
    claimed as they were written, and the enabled endpoints' rows (what a send needs)."""

    events: int
    made: int
    claimed: list[Claimed]
    endpoints: dict[uuid.UUID, Any]
