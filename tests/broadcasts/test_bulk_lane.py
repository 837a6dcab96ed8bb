"""A transactional notification sent during a broadcast is not behind it: it travels in the
normal queue while the broadcast's wait in the bulk lane.

The SMTP relay is paced (``TIDINGS_SMTP_RATE_PER_S``), so the broadcast has a backlog that
outlasts the measurement on a fast machine as on a slow one. What is asserted is what the
issue asks: the transactional notification overtook the broadcast, i.e. many of the
broadcast's notifications that were already queued when it was accepted were delivered after
it (were it behind them, none would be). Its time to delivered, idle and during the
broadcast, is printed (a bound reported, never asserted as a speed)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import asyncpg
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.broadcasts.support import broadcast_body, make_topic, seed_users, wait_progress
from tests.faults.conftest import Start
from tests.helpers import wait_for_condition
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.smtp_peer import SmtpPeer
from tests.system import System

RATE = 50  # sends a second to the SMTP relay: the broadcast's 1,000 take 20 seconds
BACKLOG = 200  # broadcast notifications queued, not yet delivered, when the one is sent
OVERTAKEN = 50  # of them, at least this many delivered after it (behind them: none)


class TimedPeer(SmtpPeer):
    """The SMTP peer, with when each recipient's message arrived (time.monotonic)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[str, float] = {}

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for rcpt in envelope.rcpt_tos:
            self.arrived[rcpt] = time.monotonic()
        return await super().handle_DATA(server, session, envelope)


def _at(history: list[dict[str, Any]], status: str) -> dt.datetime:
    return next(dt.datetime.fromisoformat(h["timestamp"]) for h in history if h["status"] == status)


async def _one(
    system: System, peer: TimedPeer, user: dict[str, Any], template: str
) -> tuple[float, float, Any]:
    """Seconds from the request to the SMTP server's taking the message and to its
    notification's recorded ``delivered``, and the notification."""
    gw = system.gateway
    peer.arrived.pop(user["email"], None)
    started = time.monotonic()
    answer = await gw.post("/api/v1/notifications/", json=notification(user["user_id"], template))
    assert answer.status_code == 202, answer.text
    found = await wait_for_status(gw, answer.json()["data"]["notification_id"], "delivered", 60)
    recorded = time.monotonic() - started
    return peer.arrived[user["email"]] - started, recorded, found


_WAITING = (
    "SELECT count(*) FROM gateway.notifications n"
    " JOIN gateway.notification_events q ON q.notification_id = n.id AND q.status = 'queued'"
    " WHERE n.request_id LIKE $1 AND NOT EXISTS (SELECT 1 FROM gateway.notification_events d"
    "  WHERE d.notification_id = n.id AND d.status = 'delivered')"
)


async def _backlog(database_url: str, broadcast_id: str) -> None:
    """Until the broadcast has BACKLOG notifications in the workers' queue (queued, not
    yet delivered) and is being delivered."""
    conn = await asyncpg.connect(database_url)

    async def waiting() -> bool:
        return int(await conn.fetchval(_WAITING, f"broadcast:{broadcast_id}:%")) >= BACKLOG

    try:
        await wait_for_condition(waiting, timeout_s=120, interval_s=0.1, what="a backlog")
    finally:
        await conn.close()


async def _overtaken(database_url: str, broadcast_id: str, found: dict[str, Any]) -> list[int]:
    """Of the broadcast's notifications queued before ``found`` was accepted: how many, and
    how many of them were delivered after it was."""
    accepted, delivered = _at(found["history"], "pending"), _at(found["history"], "delivered")
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS queued,"
            " count(*) FILTER (WHERE d.created_at IS NULL OR d.created_at > $3) AS after"
            " FROM gateway.notifications n"
            " JOIN gateway.notification_events q ON q.notification_id = n.id"
            "  AND q.status = 'queued'"
            " LEFT JOIN gateway.notification_events d ON d.notification_id = n.id"
            "  AND d.status = 'delivered'"
            " WHERE n.request_id LIKE $1 AND q.created_at < $2",
            f"broadcast:{broadcast_id}:%",
            accepted.replace(tzinfo=None),
            delivered.replace(tzinfo=None),
        )
    finally:
        await conn.close()
    return [int(row["queued"]), int(row["after"])]


async def _run(make_system: Start, database_url: str, n: int) -> None:
    peer = await TimedPeer().start()
    system = await make_system(smtp=peer, smtp_rate_per_s=RATE)
    gw = system.gateway
    tag = f"lane-{uuid.uuid4().hex[:6]}"
    key = f"topic-{tag}"
    await make_topic(gw, key, await seed_users(database_url, n, tag))
    template = (await create_template(gw))["code"]
    user = await create_user(gw)
    idle = min([(await _one(system, peer, user, template))[:2] for _ in range(3)])

    answer = await gw.post("/api/v1/broadcasts/", json=broadcast_body(key, template))
    broadcast_id = answer.json()["data"]["broadcast_id"]
    await _backlog(database_url, broadcast_id)
    *during, found = await _one(system, peer, user, template)
    queued, after = await _overtaken(database_url, broadcast_id, found)
    steps = found["history"]
    print(
        f"a transactional notification during a broadcast of {n} (SMTP paced at {RATE}/s): "
        f"at the SMTP server / recorded delivered: idle {idle[0] * 1000:.0f} / "
        f"{idle[1] * 1000:.0f} ms, during it {during[0] * 1000:.0f} / "
        f"{during[1] * 1000:.0f} ms; it "
        f"overtook {after} of the {queued} broadcast notifications queued before it "
        f"(busy machine); its history: {[(h['status'], h['timestamp'][11:23]) for h in steps]}"
    )
    assert queued >= BACKLOG, f"the broadcast had queued only {queued}"
    assert after >= OVERTAKEN, f"behind the broadcast: overtook {after} of {queued}"
    await wait_progress(
        gw, broadcast_id, lambda p: p["delivered"] == n, timeout_s=60 + 2 * n / RATE, what="all"
    )


async def test_a_transactional_send_overtakes_a_broadcast(
    make_system: Start, fresh_pg: str
) -> None:
    await _run(make_system, fresh_pg, 1_000)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_transactional_send_overtakes_a_10000_broadcast(
    make_system: Start, fresh_pg: str
) -> None:
    await _run(make_system, fresh_pg, 10_000)
