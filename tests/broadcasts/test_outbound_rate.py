"""An SMTP server that refuses anything above 14 messages a second (as a provider's quota
would), and TIDINGS_SMTP_RATE_PER_S=14: every message delivered, none refused, no attempt
spent on waiting. The bounded form sends 100 (about 7 s); the long one 1,000 (about 71 s).
The time is printed, never asserted."""

from __future__ import annotations

import time
import uuid

import asyncpg
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.broadcasts.support import (
    broadcast_body,
    make_topic,
    received_by,
    seed_users,
    wait_progress,
)
from tests.faults.conftest import Start
from tests.scenario import create_template
from tests.smtp_peer import SmtpPeer

RATE = 14
JITTER = 5


class QuotaPeer(SmtpPeer):
    """Answers 451 to a message above ``RATE`` a second, as a provider's quota: GCRA on the
    server's arrival times, with a tolerance of ``JITTER`` messages early (the sender paces
    when it books a turn; each SMTP dialogue then takes its own few round trips on a busy
    machine, so arrivals are never exactly 1/RATE apart, and no provider counts that
    strictly either). Here every service shares the test's one event loop."""

    def __init__(self) -> None:
        super().__init__()
        self.tat = 0.0
        self.refused = 0
        self.earliest_s = 0.0  # the most any message came before its turn

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        now = time.monotonic()
        interval = 1.0 / RATE
        self.earliest_s = max(self.earliest_s, self.tat - now)
        if now < self.tat - JITTER * interval:
            self.refused += 1
            return "451 4.7.0 Sending rate exceeded, slow down"
        self.tat = max(self.tat, now) + interval
        return await super().handle_DATA(server, session, envelope)


async def _run(make_system: Start, database_url: str, n: int) -> None:
    peer = await QuotaPeer().start()
    system = await make_system(smtp=peer, smtp_rate_per_s=RATE)
    gw = system.gateway
    tag = f"quota-{uuid.uuid4().hex[:6]}"
    key = f"topic-{tag}"
    await make_topic(gw, key, await seed_users(database_url, n, tag))
    template = await create_template(gw)
    started = time.monotonic()
    answer = await gw.post("/api/v1/broadcasts/", json=broadcast_body(key, template["code"]))
    broadcast_id = answer.json()["data"]["broadcast_id"]
    final = await wait_progress(
        gw,
        broadcast_id,
        lambda p: p["delivered"] + p["failed"] >= n,
        timeout_s=60 + 2 * n / RATE,
        what=f"{n} delivered",
    )
    took = time.monotonic() - started
    got = received_by(peer, tag)
    conn = await asyncpg.connect(database_url)
    try:
        errors = await conn.fetchval(
            "SELECT count(*) FROM gateway.notification_events e"
            " JOIN gateway.notifications n ON n.id = e.notification_id"
            " WHERE n.request_id LIKE $1 AND e.error IS NOT NULL",
            f"broadcast:{broadcast_id}:%",
        )
    finally:
        await conn.close()
    print(
        f"{n} at {RATE}/s: {took:.1f} s (busy machine), refused {peer.refused}, "
        f"the earliest arrival {peer.earliest_s * 1000:.0f} ms before its turn; {final}"
    )
    assert final["delivered"] == n and final["failed"] == 0, final
    assert len(got) == n and set(got.values()) == {1}
    assert peer.refused == 0, "the server had to refuse"
    assert errors == 0, "an attempt was spent"


async def test_100_messages_at_14_per_second(make_system: Start, fresh_pg: str) -> None:
    await _run(make_system, fresh_pg, 100)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_1000_messages_at_14_per_second(make_system: Start, fresh_pg: str) -> None:
    await _run(make_system, fresh_pg, 1000)
