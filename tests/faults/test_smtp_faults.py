"""SMTP misbehaving: per-message temporary refusals, and a server down longer than every
retry. Each scenario counts every message at the server."""

from __future__ import annotations

import statistics
from datetime import datetime

from tests.credentials import ADMIN_KEY
from tests.faults.conftest import Start
from tests.faults.harness import (
    Run,
    history,
    send_many,
    statuses,
    tally,
    wait_quiet,
    wait_until_all,
)
from tests.scenario import create_template, create_user

N_451 = 500


async def test_451_on_the_first_two_attempts_delivers_each_exactly_once(
    make_system: Start, fresh_pg: str, fresh_vhost: str
) -> None:
    system = await make_system()
    system.smtp.refuse_first = 2
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    run = Run.new("451")
    await send_many(gw, run, user["user_id"], template["code"], N_451)
    await wait_until_all(fresh_pg, run, "delivered", timeout_s=120)
    await wait_quiet(fresh_vhost)

    result = tally(system.smtp, run)
    print(f"451 x2, {N_451} messages: {result}")
    assert result.delivered == N_451 and not result.lost
    assert not result.duplicated and not result.unexpected
    assert all(system.smtp.tries[k] == 3 for k in system.smtp.tries), "each: 451, 451, 250"

    # Attempts are in the history, with their errors; the waits grow with the attempt.
    first_gaps, second_gaps = [], []
    for nid in list(run.sent.values())[:100]:
        h = (await history(gw, nid))["history"]
        retries = [e for e in h if e["status"] == "pending" and e["error"]]
        assert [e["attempt"] for e in retries] == [1, 2]
        assert all("451" in e["error"] for e in retries)
        assert not any("breaker" in (e["detail"] or "") for e in h), "451 must not trip the breaker"
        delivered = next(e for e in h if e["status"] == "delivered")
        assert delivered["attempt"] == 3
        t1, t2, t3 = (datetime.fromisoformat(e["timestamp"]) for e in (*retries, delivered))
        first_gaps.append((t2 - t1).total_seconds())
        second_gaps.append((t3 - t2).total_seconds())
    assert min(first_gaps) >= 0.9, "a retry came back before its delay tier"
    assert statistics.mean(second_gaps) > statistics.mean(first_gaps), (first_gaps, second_gaps)


N_DOWN = 60


async def test_smtp_down_longer_than_every_retry_then_replay_delivers_once(
    make_system: Start, fresh_pg: str, fresh_vhost: str
) -> None:
    system = await make_system(
        max_attempts=3, smtp_breaker_failures=3, smtp_breaker_reset_s=2.0, max_wait_s=4.0
    )
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    await system.smtp.stop()  # refused from now on
    run = Run.new("down")
    await send_many(gw, run, user["user_id"], template["code"], N_DOWN)
    await wait_until_all(fresh_pg, run, "failed", timeout_s=120)

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for nid in run.sent.values():
        n = await history(gw, nid)
        assert n["error"] and "transient" in n["error"], n["error"]
    listed = await gw.get("/api/v1/admin/dead-letters/", params={"limit": 100}, headers=admin)
    assert listed.status_code == 200, listed.text
    letters = {d["notification_id"]: d for d in listed.json()["data"]}
    assert set(run.sent.values()) <= set(letters), "every failed notification is a dead letter"
    assert listed.json()["meta"]["total"] == N_DOWN
    assert all(letters[nid]["reason"] for nid in run.sent.values())

    await system.smtp.start()  # back, on the same port
    replayed = await gw.post(
        "/api/v1/admin/dead-letters/replay/", json={"all": True}, headers=admin
    )
    assert replayed.status_code == 200, replayed.text
    assert sum(r["outcome"] == "replayed" for r in replayed.json()["data"]) == N_DOWN
    await wait_until_all(fresh_pg, run, "delivered", timeout_s=120)
    again = await gw.post("/api/v1/admin/dead-letters/replay/", json={"all": True}, headers=admin)
    assert again.json()["data"] == [], "a replayed dead letter is not replayed twice"
    await wait_quiet(fresh_vhost)

    result = tally(system.smtp, run)
    print(f"SMTP down, then replay, {N_DOWN} messages: {result}")
    assert result.delivered == N_DOWN and not result.lost
    assert not result.duplicated and not result.unexpected
    assert (await statuses(fresh_pg, run)) == {"delivered": N_DOWN}
    h = (await history(gw, next(iter(run.sent.values()))))["history"]
    assert any("replayed from dead letter" in (e["detail"] or "") for e in h)
