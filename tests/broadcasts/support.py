"""What the broadcast tests share: users seeded straight into the users schema (the API
hashes a password with argon2 for each, minutes for thousands), a topic of them made by the
bulk calls, and counts read from the database and the SMTP peer."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx

from tests.helpers import wait_for_condition
from tests.smtp_peer import SmtpPeer
from tidings.bench.broadcast import seed


async def seed_users(database_url: str, n: int, tag: str) -> list[uuid.UUID]:
    """``n`` users with email on, addresses ``<tag>-<i>@example.com``, by COPY (the bench's)."""
    return await seed(database_url, n, tag, deliver=True)


async def make_topic(gw: httpx.AsyncClient, key: str, user_ids: list[uuid.UUID]) -> None:
    answer = await gw.post("/api/v1/topics/", json={"key": key, "name": key})
    assert answer.status_code == 201, answer.text
    for start in range(0, len(user_ids), 10_000):
        chunk = [str(u) for u in user_ids[start : start + 10_000]]
        added = await gw.post(f"/api/v1/topics/{key}/subscribers/", json={"user_ids": chunk})
        assert added.status_code == 200, added.text
        assert added.json()["data"]["changed"] == len(chunk)


def broadcast_body(key: str, template: str, **overrides: Any) -> dict[str, Any]:
    return {
        "topic_key": key,
        "notification_type": "email",
        "template_code": template,
        "variables": {"name": "there", "link": "https://example.com/news"},
        "request_id": f"bc-{uuid.uuid4().hex}",
        **overrides,
    }


async def notification_counts(database_url: str, broadcast_id: str) -> Counter[str]:
    """The broadcast's notifications per user: a user twice would be a duplicate."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT user_id, count(*) AS n FROM gateway.notifications"
            " WHERE request_id LIKE $1 GROUP BY user_id",
            f"broadcast:{broadcast_id}:%",
        )
    finally:
        await conn.close()
    return Counter({str(r["user_id"]): int(r["n"]) for r in rows})


def received_by(smtp: SmtpPeer, tag: str) -> Counter[str]:
    """Messages the SMTP peer took, per recipient address of the run ``tag``."""
    return Counter(rcpt for r in smtp.received for rcpt in r.rcpt_tos if rcpt.startswith(f"{tag}-"))


def withdrawn(progress: dict[str, Any]) -> bool:
    """A cancelled broadcast is done: its fan-out stopped (``finished_at``), nothing pending."""
    return progress["finished_at"] is not None and progress["pending"] == 0


async def wait_progress(
    gw: httpx.AsyncClient, broadcast_id: str, done: Any, timeout_s: float, what: str
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        answer = await gw.get(f"/api/v1/broadcasts/{broadcast_id}/")
        if answer.status_code != 200:
            return False
        seen.update(answer.json()["data"])
        return bool(done(seen))

    try:
        await wait_for_condition(reached, timeout_s=timeout_s, interval_s=0.25, what=what)
    except TimeoutError as exc:
        raise AssertionError(f"{what}: {seen}") from exc
    return seen
