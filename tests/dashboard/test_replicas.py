"""With two gateways (``tidings up --replicas gateway=2``, real OS processes sharing one
port), the overview shows the sum of both: each replica writes its own rows to
dashboard_samples, and whichever answers adds both up."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.credentials import ADMIN_KEY
from tests.faults.harness import Run, send_many, wait_until_all
from tests.faults.test_replicas import Up
from tests.helpers import wait_for_condition
from tests.scenario import create_template, create_user
from tests.smtp_peer import SmtpPeer
from tidings.core.settings import async_database_url

N = 30


async def rows_per_replica(database_url: str) -> dict[str, float]:
    """The accepted requests each replica counted, from its own rows."""
    engine = create_async_engine(async_database_url(database_url))
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT replica, payload FROM gateway.dashboard_samples"))
            ).all()
    finally:
        await engine.dispose()
    counted: dict[str, float] = {}
    for replica, payload in rows:
        accept = payload.get("accept", {})
        counted[replica] = counted.get(replica, 0.0) + accept.get("+Inf", 0.0)
    return counted


@pytest.mark.e2e
@pytest.mark.timeout(300)  # processes start slowly on a shared 2-core machine
async def test_two_gateways_the_overview_is_the_sum_of_both(
    up: Up, fresh_pg: str, smtp: SmtpPeer
) -> None:
    stack = await up("gateway=2", smtp)
    gw = stack.client
    user = await create_user(gw)
    template = await create_template(gw)
    run = Run.new("dash-replicas")
    # New connections for every request, so both gateways take a share.
    async with httpx.AsyncClient(
        base_url=str(gw.base_url),
        headers=dict(gw.headers),
        timeout=10,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as fresh:
        await send_many(fresh, run, user["user_id"], template["code"], N, concurrency=5)
    await wait_until_all(fresh_pg, run, "delivered", timeout_s=120)

    async with httpx.AsyncClient(
        base_url=str(gw.base_url), timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
    ) as browser:
        signed = await browser.post("/dashboard/login", data={"admin_key": ADMIN_KEY})
        assert signed.status_code == 303

        async def both_counted() -> dict[str, Any] | None:
            answer = await browser.get("/dashboard/api/overview")
            assert answer.status_code == 200, answer.text
            o: dict[str, Any] = answer.json()["data"]
            accepted = sum(o["charts"]["accept"]["count"])
            per_replica = await rows_per_replica(fresh_pg)
            both = len([n for n in per_replica.values() if n > 0]) == 2
            if o["replicas"] == 2 and both and accepted >= N:
                return o | {"per_replica": per_replica}
            return None

        o = await wait_for_condition(both_counted, timeout_s=60, what="both replicas counted")
    per_replica = o["per_replica"]
    # Each replica took a share, and the overview is their sum (the user and template
    # posts are not accept requests).
    assert all(n > 0 for n in per_replica.values()), per_replica
    assert sum(o["charts"]["accept"]["count"]) == round(sum(per_replica.values())) == N
    assert sum(o["charts"]["status"]["delivered"]) == N
    assert sum(o["charts"]["e2e"]["count"]) == N
