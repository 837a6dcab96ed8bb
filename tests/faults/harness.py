"""Counting, Jepsen-style: every notification a scenario sends is accounted for at the SMTP
server (delivered once, lost, duplicated, or unexpected) and in the gateway's statuses."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aio_pika
import asyncpg
import httpx

from tests.helpers import wait_for_condition
from tests.scenario import notification
from tests.smtp_peer import SmtpPeer
from tidings.core.retry import retry_queue
from tidings.core.topology import (
    DELAYABLE_ROUTES,
    EMAIL_QUEUE,
    FAILED_QUEUE,
    PUSH_QUEUE,
    RETRY_TIERS_MS,
    STATUS_QUEUE,
)


@dataclass
class Run:
    """One scenario's notifications: request_id -> notification_id."""

    tag: str
    sent: dict[str, str]

    @classmethod
    def new(cls, name: str) -> Run:
        return cls(tag=f"{name}-{uuid.uuid4().hex[:8]}-", sent={})


async def send_many(
    gw: httpx.AsyncClient,
    run: Run,
    user_id: str,
    code: str,
    n: int,
    *,
    concurrency: int = 20,
    start: int = 0,
) -> None:
    """POST ``n`` notifications (each must be accepted with 202)."""
    ids = iter(range(start, start + n))
    refused: list[str] = []

    async def client() -> None:
        for i in ids:
            body = notification(user_id, code, request_id=f"{run.tag}{i:05d}")
            answer = await gw.post("/api/v1/notifications/", json=body)
            if answer.status_code != 202:
                refused.append(f"{answer.status_code} {answer.text[:200]}")
                continue
            run.sent[body["request_id"]] = answer.json()["data"]["notification_id"]

    await asyncio.gather(*(client() for _ in range(concurrency)))
    assert not refused, f"{len(refused)} refused, e.g. {refused[:3]}"


async def statuses(database_url: str, run: Run) -> Counter[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM gateway.notifications"
            " WHERE request_id LIKE $1 GROUP BY status",
            run.tag + "%",
        )
    finally:
        await conn.close()
    return Counter({r["status"]: r["n"] for r in rows})


async def wait_until_all(
    database_url: str, run: Run, status: str, *, timeout_s: float = 120
) -> None:
    async def done() -> bool:
        return (await statuses(database_url, run))[status] == len(run.sent)

    try:
        await wait_for_condition(done, timeout_s=timeout_s, interval_s=0.25, what=f"all {status}")
    except TimeoutError as exc:
        raise AssertionError(f"not all {status}: {await statuses(database_url, run)}") from exc


async def queue_depths(amqp_url: str) -> dict[str, int]:
    """Ready messages in every queue (passive declares: nothing is created)."""
    names = [EMAIL_QUEUE, PUSH_QUEUE, STATUS_QUEUE, FAILED_QUEUE] + [
        retry_queue(route, tier) for route in DELAYABLE_ROUTES for tier in RETRY_TIERS_MS
    ]
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        depths = {}
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            depths[name] = queue.declaration_result.message_count or 0
        return depths
    finally:
        await connection.close()


async def wait_quiet(amqp_url: str, timeout_s: float = 60) -> None:
    """Until no queue holds a message: nothing is left that could still be delivered."""

    async def quiet() -> bool:
        return not any((await queue_depths(amqp_url)).values())

    await wait_for_condition(quiet, timeout_s=timeout_s, interval_s=0.25, what="empty queues")


@dataclass
class Tally:
    delivered: int
    lost: list[str]
    duplicated: dict[str, int]
    unexpected: list[str]

    def __str__(self) -> str:
        return (
            f"delivered {self.delivered}, lost {len(self.lost)}, "
            f"duplicated {sum(self.duplicated.values())} (over {len(self.duplicated)}), "
            f"unexpected {len(self.unexpected)}"
        )


def tally(smtp: SmtpPeer, run: Run) -> Tally:
    seen = Counter(
        str(r.message["X-Request-ID"])
        for r in smtp.received
        if str(r.message["X-Request-ID"]).startswith(run.tag)
    )
    return Tally(
        delivered=sum(1 for rid in run.sent if seen[rid] >= 1),
        lost=[rid for rid in run.sent if seen[rid] == 0],
        duplicated={rid: c - 1 for rid, c in seen.items() if c > 1},
        unexpected=[rid for rid in seen if rid not in run.sent],
    )


async def history(gw: httpx.AsyncClient, notification_id: str) -> dict[str, Any]:
    answer = await gw.get(f"/api/v1/notifications/{notification_id}/")
    data: dict[str, Any] = answer.json()["data"]
    return data
