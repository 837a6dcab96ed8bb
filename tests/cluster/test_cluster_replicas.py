"""Every service as two replicas (``tidings up --replicas``, real OS processes) on the whole
local cluster at once, through three failures in one run: the RabbitMQ node leading
``email.queue`` killed -9, the PostgreSQL primary stopped and the standby promoted, the Redis
master killed -9. Counted at the SMTP server: 0 lost of what got 202, every notification
final. Long (twelve processes and the cluster on two cores): ``-m slow`` only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.conftest import ascript
from tests.cluster.test_cluster_faults import (
    CLIENTS,
    PG_BACK_S,
    fail_over_postgres,
    rabbit_leader,
)
from tests.faults.harness import Run, TidingsUp, statuses, tally, wait_until_all
from tests.scenario import create_template, create_user
from tests.senders import Senders
from tests.smtp_peer import SmtpPeer
from tidings.core.topology import EMAIL_QUEUE

N = 1200
EVERY_SERVICE_TWICE = "gateway=2,users=2,templates=2,email=2,push=2,webhooks=2"


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpPeer]:
    peer = await SmtpPeer().start()
    yield peer
    await peer.stop()


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(900)
async def test_every_service_twice_through_a_broker_a_database_and_a_cache_failover(
    tmp_path: Path,
    smtp: SmtpPeer,
    cluster_vhost: list[str],
    failover_db: tuple[str, str, str],
    redis_sentinel: str,
) -> None:
    url, _, standby = failover_db
    vhost = cluster_vhost[0].rsplit("/", 1)[1]
    stack = TidingsUp(
        tmp_path / "tidings.log",
        EVERY_SERVICE_TWICE,
        TIDINGS_DATABASE_URL=url,
        TIDINGS_AMQP_URL=",".join(cluster_vhost),
        TIDINGS_REDIS_URL=redis_sentinel,
        TIDINGS_CACHE_NAMESPACE=f"tidings-cluster-{uuid.uuid4().hex[:8]}",
        TIDINGS_SMTP_URL=smtp.url,
        TIDINGS_RETRY_BASE_S="1",
    )
    killed_node = 0
    killed_redis = ""
    try:
        await stack.start()
        gw = stack.client
        user = await create_user(gw)
        template = await create_template(gw)
        run = Run.new("cluster-x2")
        sender = Senders(gw, run, user["user_id"], template["code"], n=N, clients=CLIENTS)
        sending = asyncio.create_task(sender.run_all())

        await sender.wait_accepted(N // 4)
        killed_node = await rabbit_leader(vhost, EMAIL_QUEUE)
        await ascript("rabbit-kill", str(killed_node))

        await sender.wait_accepted(N // 2)
        _, promoted_at = await fail_over_postgres(sender, wait_s=60)

        await sender.wait_accepted(3 * N // 4)
        killed_redis = (await ascript("redis-kill-master")).strip()

        await asyncio.wait_for(sending, 400)
        await wait_until_all(standby, run, "delivered", timeout_s=300)
    finally:
        await stack.stop()
        if killed_node:
            await ascript("rabbit-start", str(killed_node))
        if killed_redis:
            await ascript("redis-start", killed_redis)
    result = tally(smtp, run)
    back_s = sender.first_202_after[promoted_at] - promoted_at
    print(
        f"every service x2, {N} notifications, RabbitMQ node {killed_node} killed, PostgreSQL "
        f"failed over (202 again {back_s:.1f} s after the promotion), Redis {killed_redis} "
        f"killed: {result}; answers {dict(sender.codes)}"
    )
    assert not sender.wrong, sender.wrong[:3]
    assert 0 <= back_s < PG_BACK_S
    assert result.delivered == N and not result.lost and not result.unexpected, result
    assert (await statuses(standby, run)) == {"delivered": N}, "every notification final"
