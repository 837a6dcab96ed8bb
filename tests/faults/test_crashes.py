"""Processes and brokers dying: the email worker killed with SIGKILL while it holds
unacknowledged messages, and RabbitMQ going away and coming back during a run (cut at a
TCP proxy, never the machine's own broker)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.credentials import ENV
from tests.faults.conftest import Proxies, Start
from tests.faults.harness import Run, send_many, tally, wait_quiet, wait_until_all
from tests.helpers import free_port, wait_for_condition
from tests.scenario import create_template, create_user

N = 1000


async def start_email_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tidings", "run", "email", env=env, stdout=out, stderr=out
        )
    return proc


async def test_kill_9_of_the_email_worker_loses_nothing(
    make_system: Start, fresh_pg: str, fresh_vhost: str, redis_url: str, tmp_path: Path
) -> None:
    system = await make_system(skip=("email",))
    gw = system.gateway
    port = free_port()
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        | ENV
        | {
            "TIDINGS_DATABASE_URL": fresh_pg,
            "TIDINGS_AMQP_URL": fresh_vhost,
            "TIDINGS_REDIS_URL": redis_url,
            "TIDINGS_TEMPLATES_PORT": str(system.ports["templates"]),
            "TIDINGS_EMAIL_PORT": str(port),
            "TIDINGS_SMTP_URL": system.smtp.url,
            "TIDINGS_DELIVERY_LEASE_S": "2",
            "TIDINGS_RETRY_BASE_S": "1",
        }
    )
    log = tmp_path / "email.log"
    worker = await start_email_worker(env, log)

    async def worker_up() -> bool:
        return (await gw.get(f"http://127.0.0.1:{port}/health")).status_code == 200

    await wait_for_condition(worker_up, timeout_s=30, what="email worker up")
    user = await create_user(gw)
    template = await create_template(gw)
    smtp = system.smtp
    smtp.gate, smtp.hold_after = asyncio.Event(), N // 3

    run = Run.new("kill9")
    await send_many(gw, run, user["user_id"], template["code"], N)

    async def holding() -> bool:
        return smtp.held >= 1

    await wait_for_condition(holding, timeout_s=60, what="messages held at the server")
    worker.send_signal(signal.SIGKILL)
    await worker.wait()
    in_flight = smtp.held  # taken by the server, never acknowledged to the worker
    smtp.gate.set()
    worker = await start_email_worker(env, log)
    try:
        await wait_until_all(fresh_pg, run, "delivered", timeout_s=180)
        await wait_quiet(fresh_vhost)
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 60)

    result = tally(smtp, run)
    print(f"kill -9 with {in_flight} in flight at the server, {N} messages: {result}")
    assert result.delivered == N and not result.lost, result
    assert not result.unexpected
    assert sum(result.duplicated.values()) <= in_flight, (result, in_flight)
    assert worker.returncode == 0, "SIGTERM: a clean stop"


async def test_rabbitmq_down_and_back_during_a_run_loses_nothing(
    make_system: Start, proxy_to: Proxies, fresh_pg: str, fresh_vhost: str
) -> None:
    """The broker goes away (connections reset, new ones refused) and comes back. Cut at a
    TCP proxy in front of RabbitMQ: the machine's own broker keeps serving every other test."""
    proxy = await proxy_to(5672)
    system = await make_system(amqp_url=proxy.url(fresh_vhost))
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    run = Run.new("rabbit")
    await send_many(gw, run, user["user_id"], template["code"], N // 3)
    await proxy.cut()
    try:
        # Accepted while the broker is away: kept in the outbox.
        await send_many(gw, run, user["user_id"], template["code"], N - N // 3, start=N // 3)
    finally:
        await proxy.restore()
    await wait_until_all(fresh_pg, run, "delivered", timeout_s=180)
    await wait_quiet(fresh_vhost)

    result = tally(system.smtp, run)
    print(f"RabbitMQ away and back, {N} messages: {result}")
    assert result.delivered == N and not result.lost, result
    assert not result.duplicated and not result.unexpected, result
