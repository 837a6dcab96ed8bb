"""Replicas, and a replica killed: ``tidings up --replicas ...`` as a real OS process, one
supervised process per replica, and ``kill -9`` of one of them mid-run. Every message is
counted at the SMTP server (delivered, lost, duplicated, unexpected) and in the gateway's
statuses (nothing left pending)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import cast

import aio_pika
import httpx
import pytest
from sqlalchemy import Table, insert, select, text

from tests.faults.harness import (
    Run,
    TidingsUp,
    send_many,
    statuses,
    tally,
    wait_quiet,
    wait_until_all,
)
from tests.faults.proxy import TcpProxy
from tests.helpers import wait_for_condition
from tests.push.fcm_peer import FcmPeer
from tests.push.keys import fcm_token
from tests.push.support import push_template, push_user, send_push
from tests.scenario import create_template, create_user
from tests.smtp_peer import SmtpPeer
from tidings.core.bus import open_bus
from tidings.core.db import Database, open_database, utcnow
from tidings.core.migrations import migrate
from tidings.core.topology import EMAIL_QUEUE, EMAIL_ROUTE
from tidings.gateway.models import Notification, OutboxMessage
from tidings.gateway.relay import OutboxRelay
from tidings.gateway.settings import GatewaySettings

N = 600
Up = Callable[..., Awaitable[TidingsUp]]


@pytest.fixture
async def up(
    tmp_path: Path, fresh_pg: str, fresh_vhost: str, redis_url: str, cache_namespace: str
) -> AsyncIterator[Up]:
    """Start ``tidings up --replicas ...`` on this test's database, vhost and namespace."""
    started: list[TidingsUp] = []

    async def start(replicas: str, smtp: SmtpPeer, **env: str) -> TidingsUp:
        stack = TidingsUp(
            tmp_path / "tidings.log",
            replicas,
            TIDINGS_DATABASE_URL=fresh_pg,
            TIDINGS_AMQP_URL=fresh_vhost,
            TIDINGS_REDIS_URL=redis_url,
            TIDINGS_CACHE_NAMESPACE=cache_namespace,
            TIDINGS_SMTP_URL=smtp.url,
            TIDINGS_RETRY_BASE_S="1",
            **env,
        )
        started.append(stack)
        await stack.start()
        return stack

    yield start
    for stack in started:
        code = await stack.stop()
        assert code == 0, stack.log.read_text()[-3000:]


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpPeer]:
    peer = await SmtpPeer().start()
    yield peer
    await peer.stop()


@pytest.mark.e2e
@pytest.mark.timeout(300)  # processes start slowly on a shared 2-core machine
async def test_every_service_as_replicas_one_gateway_url_discovery_finds_them(
    up: Up, smtp: SmtpPeer, fresh_pg: str
) -> None:
    fcm = await FcmPeer().start()
    try:
        stack = await up(
            "gateway=2,users=2,templates=2,email=2,push=2,webhooks=2",
            smtp,
            TIDINGS_FCM_SERVICE_ACCOUNT_JSON=fcm.service_account_json(),
            TIDINGS_FCM_BASE_URL=fcm.server.origin,
            TIDINGS_WEBPUSH_ALLOW_INSECURE="true",
        )
        pids = {s: await stack.pids(s) for s in stack.counts}
        assert all(len(p) == 2 for p in pids.values()), pids
        assert len(set().union(*pids.values())) == 12, "twelve processes, each its own"

        # The gateway finds both users and both templates replicas through discovery.
        async def both_found() -> bool:
            info = (await stack.client.get("/health")).json()["data"]["instances"]
            return sorted(info["users"]) == stack.urls("users") and sorted(
                info["templates"]
            ) == stack.urls("templates")

        await wait_for_condition(both_found, timeout_s=30, what="both replicas discovered")
        gw = stack.client
        user = await create_user(gw)
        template = await create_template(gw)
        run = Run.new("replicas")
        # Few at once: twelve processes' pools share PostgreSQL's 100 connections with the
        # other tests of the machine (past them it answers "too many clients").
        await send_many(gw, run, user["user_id"], template["code"], 100, concurrency=5)

        # Push through both push workers, counted at the FCM peer by each message's body.
        code = await push_template(gw)
        token = fcm_token()
        push_user_id = await push_user(gw, push_token=token)
        pushes = Run.new("replicas-push")
        for i in range(50):
            rid = f"{pushes.tag}{i:05d}"
            nid = await send_push(
                gw, push_user_id, code, request_id=rid, variables={"order_id": str(i)}
            )
            pushes.sent[rid] = nid
        await wait_until_all(fresh_pg, run, "delivered", timeout_s=120)
        await wait_until_all(fresh_pg, pushes, "delivered", timeout_s=120)
        bodies = Counter(s.message["notification"]["body"] for s in fcm.sent_to(token))
    finally:
        await fcm.close()
    result = tally(smtp, run)
    print(f"every service x2, 100 emails: {result}; 50 pushes: {sum(bodies.values())} sent")
    assert result.delivered == 100 and not result.lost and not result.duplicated
    assert bodies == Counter(f"Your order {i} has shipped." for i in range(50)), "each once"


@pytest.mark.e2e
@pytest.mark.timeout(300)  # processes start slowly on a shared 2-core machine
async def test_kill_9_of_one_of_two_gateways_mid_run_loses_nothing(
    up: Up, smtp: SmtpPeer, fresh_pg: str, fresh_vhost: str
) -> None:
    stack = await up("gateway=2,email=2", smtp)
    gw = stack.client
    user = await create_user(gw)
    template = await create_template(gw)
    run = Run.new("gw-kill9")
    victim = min(await stack.pids("gateway"))
    # New connections for every request, so both gateways take a share of the run.
    gw_fresh = httpx.AsyncClient(
        base_url=str(gw.base_url),
        headers=dict(gw.headers),
        timeout=10,
        limits=httpx.Limits(max_keepalive_connections=0),
    )

    async def kill_when_a_third_is_in() -> None:
        async def a_third() -> bool:
            return len(run.sent) >= N // 3

        await wait_for_condition(a_third, timeout_s=60, interval_s=0.01, what="a third sent")
        os.kill(victim, signal.SIGKILL)

    try:
        killer = asyncio.create_task(kill_when_a_third_is_in())
        retried = await send_many(
            gw_fresh, run, user["user_id"], template["code"], N, concurrency=20, retries=5
        )
        await killer
    finally:
        await gw_fresh.aclose()
    await wait_until_all(fresh_pg, run, "delivered", timeout_s=180)
    await wait_quiet(fresh_vhost)

    result = tally(smtp, run)
    print(f"kill -9 of one of two gateways, {N} messages, {retried} requests retried: {result}")
    assert len(run.sent) == N
    assert result.delivered == N and not result.lost and not result.unexpected, result
    assert (await statuses(fresh_pg, run)) == {"delivered": N}, "none left pending"
    # The relay de-duplicates nothing itself: a row published and not yet deleted when its
    # relay died is published again, and the workers' delivery records stop the second send.
    assert not result.duplicated, result
    assert victim not in await stack.pids("gateway"), "the killed replica was replaced"


@pytest.mark.e2e
@pytest.mark.timeout(300)  # processes start slowly on a shared 2-core machine
async def test_kill_9_of_one_of_two_email_workers_duplicates_at_most_its_prefetch(
    up: Up, smtp: SmtpPeer, fresh_pg: str, fresh_vhost: str
) -> None:
    prefetch = 10
    stack = await up(
        "email=2",
        smtp,
        TIDINGS_PREFETCH=str(prefetch),
        TIDINGS_DELIVERY_LEASE_S="2",
    )
    gw = stack.client
    user = await create_user(gw)
    template = await create_template(gw)
    # Past a third of the run the server takes each message and holds its reply: the
    # workers' sends in flight are then ones the server has and the workers cannot know.
    smtp.gate, smtp.hold_after = asyncio.Event(), N // 3
    run = Run.new("email-kill9")
    await send_many(gw, run, user["user_id"], template["code"], N)

    async def holding() -> bool:
        return smtp.held >= 2

    await wait_for_condition(holding, timeout_s=60, what="messages held at the server")
    victim = min(await stack.pids("email"))
    os.kill(victim, signal.SIGKILL)
    in_flight = smtp.held  # of both workers: the survivor's are acknowledged after the gate
    smtp.gate.set()
    await wait_until_all(fresh_pg, run, "delivered", timeout_s=180)
    await wait_quiet(fresh_vhost)

    result = tally(smtp, run)
    duplicates = sum(result.duplicated.values())
    print(
        f"kill -9 of one of two email workers (prefetch {prefetch}), {in_flight} held at the "
        f"server, {N} messages: {result}"
    )
    assert result.delivered == N and not result.lost and not result.unexpected, result
    assert (await statuses(fresh_pg, run)) == {"delivered": N}, "none left pending"
    assert duplicates <= min(in_flight, prefetch), (result, in_flight)
    assert victim not in await stack.pids("email"), "the killed replica was replaced"


@pytest.mark.e2e
@pytest.mark.timeout(300)  # processes start slowly on a shared 2-core machine
async def test_a_replica_that_cannot_stop_is_killed_and_up_still_stops_cleanly(
    up: Up, smtp: SmtpPeer
) -> None:
    stack = await up("email=2", smtp, TIDINGS_SHUTDOWN_GRACE_S="0")
    frozen = min(await stack.pids("email"))
    os.kill(frozen, signal.SIGSTOP)  # it cannot act on the SIGTERM to come
    assert await stack.stop() == 0, stack.log.read_text()[-3000:]
    assert "did not stop in 10s after SIGTERM: killed" in stack.log.read_text()
    with pytest.raises(ProcessLookupError):
        os.kill(frozen, 0)


# Two relays over one outbox, in this process (each its own engine and broker connection, as
# two gateways have): every row is published once, and a crashed relay's rows are taken over.
RELAY_ROWS = 400


async def _outbox(db: Database, n: int) -> list[str]:
    """``n`` notifications with their outbox rows, as the gateway writes them."""
    ids = [uuid.uuid4() for _ in range(n)]
    now = utcnow()
    notifications = cast(Table, Notification.__table__)
    outbox = cast(Table, OutboxMessage.__table__)
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(notifications),
            [
                {
                    "id": i,
                    "request_id": f"relay-{i}",
                    "body_hash": "x",
                    "user_id": i,
                    "notification_type": "email",
                    "template_code": "t",
                    "language": "en",
                    "priority": 5,
                    "variables": {},
                    "status": "pending",
                    "correlation_id": "relay",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in ids
            ],
        )
        await conn.execute(
            insert(outbox),
            [
                {
                    "notification_id": i,
                    "routing_key": EMAIL_ROUTE,
                    "payload": b"{}",
                    "correlation_id": "relay",
                    "created_at": now,
                    "available_at": now,
                }
                for i in ids
            ],
        )
    return [str(i) for i in ids]


async def _published(amqp_url: str) -> Counter[str]:
    """Every message in email.queue, by message id (taken off the queue)."""
    seen: Counter[str] = Counter()
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(EMAIL_QUEUE, passive=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            seen[str(message.message_id)] += 1
    finally:
        await connection.close()
    return seen


async def _unlocked(db: Database) -> int:
    """Outbox rows no relay holds at the moment."""
    async with db.engine.begin() as conn:
        outbox = cast(Table, OutboxMessage.__table__)
        rows = await conn.execute(select(outbox.c.id).with_for_update(skip_locked=True))
        return len(rows.all())


async def test_two_relays_publish_each_row_once_and_take_over_a_crashed_ones_rows(
    fresh_pg: str, fresh_vhost: str
) -> None:
    settings = GatewaySettings(database_url=fresh_pg, amqp_url=fresh_vhost)
    await asyncio.to_thread(migrate, "tidings.gateway", settings.store_url, "gateway")
    async with TcpProxy(5672) as proxy, AsyncExitStack() as stack:
        dbs, relays = [], []
        for amqp_url in (proxy.url(fresh_vhost), fresh_vhost):  # relay A through the proxy
            db = open_database(settings.store_url, "gateway")
            stack.push_async_callback(db.close)
            bus = open_bus(settings.model_copy(update={"amqp_url": amqp_url}))
            await bus.start()
            stack.push_async_callback(bus.close)
            dbs.append(db)
            relays.append(OutboxRelay(db, bus, batch_size=20, poll_s=1))
        a, b = relays

        # Both at once, in batches of 20: the rows are shared, none published twice. (Each
        # engine connected first, so that neither starts late by a connect.)
        for db in dbs:
            await _unlocked(db)
        ids = await _outbox(dbs[0], RELAY_ROWS)

        published: Counter[OutboxRelay] = Counter()

        async def drain(relay: OutboxRelay) -> None:
            while flushed := await relay.flush():
                published[relay] += flushed

        await asyncio.gather(drain(a), drain(b))
        seen = await _published(fresh_vhost)
        print(f"two relays, {RELAY_ROWS} rows: A published {published[a]}, B {published[b]}")
        assert seen == Counter(dict.fromkeys(ids, 1)), "each row published exactly once"
        assert published[a] > 0 and published[b] > 0, "both relays took a share"

        # A takes a batch and its broker hangs; B publishes everything else meanwhile.
        more = await _outbox(dbs[0], 100)
        proxy.stall()
        stuck = asyncio.create_task(a.flush())

        async def a_holds_a_batch() -> bool:
            # Read from pg_stat_activity, which takes no lock: a probe that locked rows (FOR
            # UPDATE SKIP LOCKED) would take A's batch from under it.
            async with dbs[1].engine.begin() as conn:
                waiting = await conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state = 'idle in transaction'"
                        " AND query LIKE '%FOR UPDATE SKIP LOCKED%'"  # its select is done
                    )
                )
                return waiting.scalar_one() == 1

        await wait_for_condition(a_holds_a_batch, timeout_s=10, what="relay A holding its rows")
        await drain(b)
        assert published[b] == RELAY_ROWS - published[a] + 80, "all but A's batch of 20"
        assert await _unlocked(dbs[1]) == 0
        # A dies: its broker connection and its database session go, as with kill -9.
        await proxy.cut()
        async with dbs[1].engine.begin() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND state = 'idle in transaction'"
                )
            )
        stuck.cancel()
        with contextlib.suppress(BaseException):
            await stuck

        async def released() -> bool:  # the terminated backend ends soon after the signal
            return await _unlocked(dbs[1]) == 20

        await wait_for_condition(released, timeout_s=10, what="the dead relay's rows released")
        assert await b.flush() == 20, "the dead relay's rows are B's now"
        seen = await _published(fresh_vhost)
        assert seen == Counter(dict.fromkeys(more, 1)), "each published once, none lost"
