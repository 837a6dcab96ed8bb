"""A stalled broker and a misbehaving SMTP server. RabbitMQ is stalled through a TCP proxy
(tests/faults/proxy.py) between the services and the machine's RabbitMQ, never by stopping
the server; the SMTP peer answers 451, drops connections after taking a message and stalls
its replies, at random (seeded). Every message is counted at the SMTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.faults.conftest import Start
from tests.faults.harness import Run, send_many, statuses, tally, wait_quiet, wait_until_all
from tests.faults.proxy import TcpProxy
from tests.helpers import logged
from tests.scenario import create_template, create_user

N_STALL = 600
STALL_BOUND_S = 60.0  # the publish timeout (10 s) and then some
# After the broker flows again, every notification is final within this (stated in
# docs/delivery.md, "Replicas and crashes").
SETTLE_AFTER_STALL_S = 90.0


@pytest.fixture
async def rabbit_proxy() -> AsyncIterator[TcpProxy]:
    """Asked for before make_system, so it is closed after the system has stopped."""
    async with TcpProxy(5672) as proxy:
        yield proxy


async def test_rabbitmq_stalled_past_the_publish_timeout_loses_nothing(
    rabbit_proxy: TcpProxy, make_system: Start, fresh_pg: str, fresh_vhost: str
) -> None:
    proxy = rabbit_proxy
    system = await make_system(amqp_url=proxy.url(fresh_vhost))
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    run = Run.new("stall")
    third = N_STALL // 3
    await send_many(gw, run, user["user_id"], template["code"], third)
    with logged("tidings.gateway.relay", "could not publish") as publish_timed_out:
        proxy.stall()
        stalled_at = time.monotonic()
        # Accepted while the broker hangs: the gateway needs only PostgreSQL to accept.
        await send_many(gw, run, user["user_id"], template["code"], third, start=third)
        # Held until the stall has done its worst: a publish waited out its confirm timeout
        # (the bus's publish timeout, 10 s) and the relay gave up on it, to try again.
        await asyncio.wait_for(publish_timed_out.wait(), STALL_BOUND_S)
    stall_s = time.monotonic() - stalled_at
    await proxy.restore()
    restored_at = time.monotonic()
    await send_many(gw, run, user["user_id"], template["code"], third, start=2 * third)
    await wait_until_all(fresh_pg, run, "delivered", timeout_s=SETTLE_AFTER_STALL_S)
    settled_s = time.monotonic() - restored_at
    await wait_quiet(fresh_vhost)

    result = tally(system.smtp, run)
    print(
        f"RabbitMQ stalled {stall_s:.1f} s, {N_STALL} messages: {result}; "
        f"all delivered {settled_s:.1f} s after it flowed again"
    )
    assert result.delivered == N_STALL and not result.lost and not result.unexpected, result
    assert (await statuses(fresh_pg, run)) == {"delivered": N_STALL}, "none left pending"
    assert not result.duplicated, "a stalled broker is no reason to send twice"


@pytest.mark.parametrize(
    "n",
    [
        400,  # the bounded form every run takes
        pytest.param(2000, marks=[pytest.mark.slow, pytest.mark.timeout(1200)]),
    ],
)
async def test_smtp_with_451s_dropped_connections_and_stalls_delivers_everything(
    make_system: Start, fresh_pg: str, fresh_vhost: str, n: int
) -> None:
    system = await make_system()
    smtp = system.smtp
    smtp.temp_fail_rate, smtp.drop_rate, smtp.stall_rate, smtp.stall_s = 0.05, 0.01, 0.02, 2.0
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    run = Run.new("smtp-chaos")
    started = time.monotonic()
    await send_many(gw, run, user["user_id"], template["code"], n)
    await wait_until_all(fresh_pg, run, "delivered", timeout_s=60 + n * 0.25)
    took_s = time.monotonic() - started
    await wait_quiet(fresh_vhost)

    result = tally(smtp, run)
    duplicates = sum(result.duplicated.values())
    print(
        f"SMTP with {smtp.temp_failed} 451s, {smtp.dropped_after_data} connections dropped "
        f"after DATA, {smtp.stalled} 2 s stalls, {n} messages in {took_s:.1f} s: {result}"
    )
    assert smtp.temp_failed and smtp.dropped_after_data and smtp.stalled, "every fault happened"
    assert result.delivered == n and not result.lost and not result.unexpected, result
    assert (await statuses(fresh_pg, run)) == {"delivered": n}, "none left pending"
    assert duplicates <= smtp.dropped_after_data, result
