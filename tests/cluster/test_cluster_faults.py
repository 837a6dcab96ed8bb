"""Tidings on the local cluster (deploy/cluster/local.sh), a node of it failing mid-run, every
notification counted at the SMTP server (tests/faults/harness.py):

* RabbitMQ: kill -9 the node that leads ``email.queue``, or the one the gateway's outbox relay
  is connected to: 0 lost, duplicates counted and bounded by what was in flight.
* PostgreSQL: the primary stopped (immediate), the standby promoted: 0 lost of what got 202,
  503 (never 500) during the switch, 202 again within ``PG_BACK_S`` of the promotion.
* Redis: the master killed -9, Sentinel promotes the replica: 0 lost.

One fault per test, on the part of the cluster it is about; the other two dependencies are the
machine's own. The bounded form runs in the default suite; the issue's 2,000-message form is
``-m slow``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from tests.cluster.conftest import RABBIT_PORTS, ascript
from tests.faults.harness import Run, statuses, tally, wait_quiet, wait_until_all
from tests.helpers import wait_for_condition
from tests.scenario import create_template, create_user
from tests.senders import Senders
from tests.system import System, start_system
from tidings.core.settings import TidingsSettings
from tidings.core.topology import EMAIL_QUEUE

N_FAST = 300
N_SLOW = 2000
SIZES = [N_FAST, pytest.param(N_SLOW, marks=[pytest.mark.slow, pytest.mark.timeout(900)])]
CLIENTS = 10
# TIDINGS_PREFETCH's default: what one consumer holds unacknowledged
PREFETCH = TidingsSettings.model_fields["prefetch"].default
# Stated in docs/clusters.md: after the standby is promoted, the gateway answers 202 again
# within this (the breaker's probe, 1 s, a connect, and the 2-core machine's slack).
PG_BACK_S = 10.0

pytestmark = pytest.mark.timeout(300)


async def system_on(**urls: str) -> System:
    return await start_system(
        **urls, cache_namespace=f"tidings-cluster-{uuid.uuid4().hex[:8]}", retry_base_s=1.0
    )


async def start_run(system: System, name: str, n: int) -> tuple[Run, Senders, asyncio.Task[None]]:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    run = Run.new(name)
    sender = Senders(gw, run, user["user_id"], template["code"], n=n, clients=CLIENTS)
    return run, sender, asyncio.create_task(sender.run_all())


async def fail_over_postgres(sender: Senders, wait_s: float = 30) -> tuple[float, float]:
    """Stop the primary (immediate); once a client has been answered 503, promote the standby.
    Returns when each happened; the first 202 after the promotion is noted in ``sender``."""
    await ascript("pg-stop-primary")
    stopped_at = time.monotonic()

    async def refused() -> bool:
        return sender.last_503_at > stopped_at

    await wait_for_condition(refused, timeout_s=wait_s, what="a 503 while no primary is up")
    await ascript("pg-promote")
    promoted_at = time.monotonic()
    sender.first_202_after[promoted_at] = 0.0
    return stopped_at, promoted_at


async def rabbit_leader(vhost: str, queue: str, via: int = 1) -> int:
    out = await ascript(
        "rabbitmqctl", str(via), "list_queues", "-p", vhost, "name", "leader", "--formatter", "json"
    )
    leaders = {q["name"]: q["leader"] for q in json.loads(out[out.index("[") :])}
    return int(leaders[queue].split("@")[0].removeprefix("tidings-c"))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("target", ["email.queue leader", "relay's node"])
async def test_a_rabbitmq_node_killed_mid_run_loses_nothing(
    cluster_vhost: list[str], fresh_pg: str, redis_url: str, target: str, n: int
) -> None:
    vhost = cluster_vhost[0].rsplit("/", 1)[1]
    system = await system_on(
        database_url=fresh_pg, amqp_url=",".join(cluster_vhost), redis_url=redis_url
    )
    killed = 0
    try:
        run, sender, sending = await start_run(system, f"rabbit-{target[:5]}", n)
        await sender.wait_accepted(n // 3)
        if target == "relay's node":
            node = system.apps["gateway"].state.gateway.bus.node
            killed = RABBIT_PORTS.index(int(node.rsplit(":", 1)[1])) + 1
        else:
            killed = await rabbit_leader(vhost, EMAIL_QUEUE)
        await ascript("rabbit-kill", str(killed))
        killed_at = time.monotonic()
        await asyncio.wait_for(sending, 150)
        await wait_until_all(fresh_pg, run, "delivered", timeout_s=60 + n * 0.1)
        settled_s = time.monotonic() - killed_at
        live = cluster_vhost[killed % 3]  # the next node: not the killed one
        await wait_quiet(live)
        assert await rabbit_leader(vhost, EMAIL_QUEUE, via=killed % 3 + 1) != killed
    finally:
        await system.close()
        if killed:
            await ascript("rabbit-start", str(killed))
    result = tally(system.smtp, run)
    duplicates = sum(result.duplicated.values())
    print(
        f"RabbitMQ node {killed} ({target}) killed -9 after {n // 3} of {n}: {result}; "
        f"all delivered {settled_s:.1f} s after; answers {dict(sender.codes)}"
    )
    assert not sender.wrong, sender.wrong[:3]
    assert result.delivered == n and not result.lost and not result.unexpected, result
    assert (await statuses(fresh_pg, run)) == {"delivered": n}, "every notification final"
    assert duplicates <= PREFETCH, "at most what the consumer held unacknowledged"


@pytest.mark.parametrize("n", SIZES)
async def test_postgresql_failover_mid_run_loses_nothing_and_answers_503_meanwhile(
    failover_db: tuple[str, str, str], fresh_vhost: str, redis_url: str, n: int
) -> None:
    url, _, standby = failover_db
    # A send whose worker lost the database between its claim and its mark waits out the
    # claim's lease before it is tried again (60 s by default): shortened to keep the test short.
    system = await system_on(
        database_url=url, amqp_url=fresh_vhost, redis_url=redis_url, delivery_lease_s=10.0
    )
    try:
        run, sender, sending = await start_run(system, "pg-failover", n)
        await sender.wait_accepted(n // 3)
        stopped_at, promoted_at = await fail_over_postgres(sender)
        await asyncio.wait_for(sending, 200)
        accepted_s = time.monotonic() - promoted_at
        await wait_until_all(standby, run, "delivered", timeout_s=90 + n * 0.1)
        delivered_s = time.monotonic() - promoted_at
        await wait_quiet(fresh_vhost)
    finally:
        await system.close()
    result = tally(system.smtp, run)
    back_s = sender.first_202_after[promoted_at] - promoted_at
    print(
        f"PostgreSQL primary stopped after {n // 3} of {n}, standby promoted "
        f"{promoted_at - stopped_at:.1f} s later: {result}; answers {dict(sender.codes)}; "
        f"202 again {back_s:.1f} s after the promotion, all accepted {accepted_s:.1f} s and "
        f"delivered {delivered_s:.1f} s after it"
    )
    assert not sender.wrong, f"not 202 or 503: {sender.wrong[:3]}"
    assert sender.codes[503] > 0
    assert 0 <= back_s < PG_BACK_S
    assert result.delivered == n and not result.lost and not result.unexpected, result
    assert (await statuses(standby, run)) == {"delivered": n}, "every notification final"
    assert not result.duplicated, "a database failover is no reason to send twice"


@pytest.mark.parametrize("n", SIZES)
async def test_redis_master_killed_mid_run_loses_nothing(
    redis_sentinel: str, fresh_pg: str, fresh_vhost: str, n: int
) -> None:
    async def replica_in_sync() -> bool:
        master = (await ascript("redis-master")).strip()
        return "connected_slaves:1" in (await _redis_info(int(master)))

    await wait_for_condition(replica_in_sync, timeout_s=30, what="a replica to promote")
    system = await system_on(database_url=fresh_pg, amqp_url=fresh_vhost, redis_url=redis_sentinel)
    killed = ""
    try:
        run, sender, sending = await start_run(system, "redis-failover", n)
        await sender.wait_accepted(n // 3)
        killed = (await ascript("redis-kill-master")).strip()
        killed_at = time.monotonic()

        async def promoted() -> bool:
            return (await ascript("redis-master")).strip() != killed

        await wait_for_condition(promoted, timeout_s=30, what="Sentinel's promotion")
        promoted_s = time.monotonic() - killed_at
        await asyncio.wait_for(sending, 150)
        await wait_until_all(fresh_pg, run, "delivered", timeout_s=60 + n * 0.1)
        await wait_quiet(fresh_vhost)
    finally:
        await system.close()
        if killed:
            await ascript("redis-start", killed)
    result = tally(system.smtp, run)
    print(
        f"Redis master {killed} killed -9 after {n // 3} of {n}, replica promoted in "
        f"{promoted_s:.1f} s: {result}; answers {dict(sender.codes)}"
    )
    assert not sender.wrong, f"not 202 or 503: {sender.wrong[:3]}"
    assert result.delivered == n and not result.lost and not result.unexpected, result
    assert (await statuses(fresh_pg, run)) == {"delivered": n}, "every notification final"


async def _redis_info(port: int) -> str:
    proc = await asyncio.create_subprocess_exec(
        "redis-cli", "-p", str(port), "info", "replication", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.decode()
