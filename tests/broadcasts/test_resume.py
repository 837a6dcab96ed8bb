"""Kill -9 of the gateway doing a broadcast's fan-out at about half way, then start it again:
it takes the broadcast back once the dead one's lease has run out and goes on from the
cursor. Every subscriber has exactly one notification (the database) and one message (the
SMTP peer). The bounded form has 2,000 subscribers; the slow one 10,000."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

from tests.broadcasts.support import (
    broadcast_body,
    make_topic,
    notification_counts,
    received_by,
    seed_users,
    wait_progress,
)
from tests.credentials import ENV
from tests.faults.conftest import Start
from tests.faults.harness import wait_quiet
from tests.helpers import wait_for_condition
from tests.scenario import create_template

PAGE = 100


async def _start_gateway(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tidings", "run", "gateway", env=env, stdout=out, stderr=out
        )


async def _run(
    make_system: Start, database_url: str, amqp_url: str, redis_url: str, log: Path, n: int
) -> None:
    system = await make_system(skip=("gateway",))
    gw = system.gateway
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        | ENV
        | {
            "TIDINGS_DATABASE_URL": database_url,
            "TIDINGS_AMQP_URL": amqp_url,
            "TIDINGS_REDIS_URL": redis_url,
            "TIDINGS_CACHE_NAMESPACE": system.settings["cache_namespace"],
            "TIDINGS_GATEWAY_PORT": str(system.ports["gateway"]),
            "TIDINGS_USERS_PORT": str(system.ports["users"]),
            "TIDINGS_TEMPLATES_PORT": str(system.ports["templates"]),
            "TIDINGS_RATE_LIMIT_PER_S": "1000000",
            "TIDINGS_RATE_LIMIT_BURST": "1000000",
            "TIDINGS_RECIPIENT_RATE_PER_S": "1000000",
            "TIDINGS_RECIPIENT_BURST": "1000000",
            "TIDINGS_BROADCAST_PAGE_SIZE": str(PAGE),
            "TIDINGS_BROADCAST_LEASE_S": "3",
            "TIDINGS_LOG_FORMAT": "text",
        }
    )
    gateway = await _start_gateway(env, log)

    async def up() -> bool:
        return (await gw.get("/health")).status_code == 200

    try:
        await wait_for_condition(up, timeout_s=60, what="gateway up")
        tag = f"resume-{uuid.uuid4().hex[:6]}"
        key = f"topic-{tag}"
        await make_topic(gw, key, await seed_users(database_url, n, tag))
        template = await create_template(gw)
        answer = await gw.post("/api/v1/broadcasts/", json=broadcast_body(key, template["code"]))
        assert answer.status_code == 202, answer.text
        broadcast_id = answer.json()["data"]["broadcast_id"]
        await wait_progress(
            gw, broadcast_id, lambda p: p["created"] >= n // 2, timeout_s=300, what="half way"
        )
        gateway.send_signal(signal.SIGKILL)
        await gateway.wait()
        made_before = len(await notification_counts(database_url, broadcast_id))
        gateway = await _start_gateway(env, log)
        await wait_for_condition(up, timeout_s=60, what="gateway back")
        final = await wait_progress(
            gw,
            broadcast_id,
            lambda p: p["status"] == "finished" and p["delivered"] == n,
            timeout_s=120 + n / 20,
            what="every subscriber delivered",
        )
        await wait_quiet(amqp_url)
    finally:
        if gateway.returncode is None:
            gateway.send_signal(signal.SIGTERM)
            await asyncio.wait_for(gateway.wait(), 60)
    per_user = await notification_counts(database_url, broadcast_id)
    got = received_by(system.smtp, tag)
    print(f"kill -9 with {made_before} of {n} made: {final}; the server took {sum(got.values())}")
    assert n // 2 <= made_before < n, "killed at about half way"
    assert len(per_user) == n and set(per_user.values()) == {1}, per_user.most_common(3)
    assert len(got) == n and set(got.values()) == {1}, got.most_common(3)
    assert final["created"] == n and final["failed"] == 0, final


async def test_kill_9_mid_fan_out_then_restart(
    make_system: Start, fresh_pg: str, fresh_vhost: str, redis_url: str, tmp_path: Path
) -> None:
    await _run(make_system, fresh_pg, fresh_vhost, redis_url, tmp_path / "gateway.log", 2_000)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_kill_9_mid_fan_out_then_restart_10000(
    make_system: Start, fresh_pg: str, fresh_vhost: str, redis_url: str, tmp_path: Path
) -> None:
    await _run(make_system, fresh_pg, fresh_vhost, redis_url, tmp_path / "gateway.log", 10_000)
