"""The templates service down for 20 s, 50 racing requests with one request_id, and poison
messages on the work queue."""

from __future__ import annotations

import asyncio

import aio_pika
import orjson

from tests.credentials import ADMIN_KEY
from tests.faults.conftest import Start
from tests.faults.harness import Run, send_many, statuses, tally, wait_quiet, wait_until_all
from tests.helpers import wait_for_condition
from tests.scenario import create_template, create_user, notification, wait_for_status
from tidings.core.topology import EMAIL_ROUTE, EXCHANGE

OUTAGE_S = 20
N = 200


async def test_templates_down_20s_opens_the_breaker_and_fails_nothing(
    make_system: Start, fresh_pg: str, fresh_vhost: str
) -> None:
    system = await make_system(template_cache_ttl_s=0.2, templates_breaker_reset_s=2.0)
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    warm = await gw.post(
        "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
    )
    await wait_for_status(gw, warm.json()["data"]["notification_id"], "delivered")
    await system.smtp.next()

    await system.stop_service("templates")
    run = Run.new("tpl")
    # The gateway still accepts: it knows the template from before (last known copy).
    await send_many(gw, run, user["user_id"], template["code"], N)
    email_health = f"http://127.0.0.1:{system.ports['email']}/health"

    async def breaker_open() -> bool:
        checks = (await gw.get(email_health)).json()["data"]["checks"]
        return "breaker open" in checks["templates_service"]

    await wait_for_condition(breaker_open, timeout_s=30, what="templates breaker open")
    # The outage itself is what is under test: it lasts OUTAGE_S whatever happens meanwhile.
    await asyncio.sleep(OUTAGE_S)
    during = await statuses(fresh_pg, run)
    assert during["failed"] == 0 and during["delivered"] == 0, during
    await system.start_service("templates")
    await wait_until_all(fresh_pg, run, "delivered", timeout_s=120)
    await wait_quiet(fresh_vhost)

    result = tally(system.smtp, run)
    print(f"templates down {OUTAGE_S}s, {N} messages: {result}")
    assert result.delivered == N and not result.lost
    assert not result.duplicated and not result.unexpected


async def test_50_concurrent_posts_with_one_request_id_make_one_email(
    make_system: Start, fresh_pg: str, fresh_vhost: str
) -> None:
    system = await make_system()
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    body = notification(user["user_id"], template["code"])
    answers = await asyncio.gather(
        *(gw.post("/api/v1/notifications/", json=body) for _ in range(50))
    )
    assert {a.status_code for a in answers} == {202}
    ids = {a.json()["data"]["notification_id"] for a in answers}
    assert len(ids) == 1
    run = Run(tag=body["request_id"], sent={body["request_id"]: ids.pop()})
    await wait_until_all(fresh_pg, run, "delivered")
    await wait_quiet(fresh_vhost)
    assert (await statuses(fresh_pg, run)) == {"delivered": 1}
    result = tally(system.smtp, run)
    assert result.delivered == 1 and not result.duplicated, result


async def test_poison_messages_are_dead_lettered_and_the_worker_keeps_going(
    make_system: Start, fresh_pg: str, fresh_vhost: str
) -> None:
    system = await make_system()
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    good = notification(user["user_id"], template["code"])
    valid = {
        "notification_id": "00000000-0000-0000-0000-000000000001",
        "request_id": "r",
        "notification_type": "email",
        "template_code": "x",
        "language": "en",
        "variables": {},
        "recipient": {"user_id": "u", "name": "n"},
    }
    poisons = {
        "not-json": b"{this is not json",
        "schema-2": orjson.dumps({**valid, "schema_version": 2}),
        "missing-fields": orjson.dumps({"notification_id": "x"}),
    }
    connection = await aio_pika.connect(fresh_vhost)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE)
        for name, body in poisons.items():
            await exchange.publish(aio_pika.Message(body, message_id=name), EMAIL_ROUTE)
    finally:
        await connection.close()

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def dead_lettered() -> dict[str, str] | None:
        answer = await gw.get(
            "/api/v1/admin/dead-letters/", params={"reason_contains": "malformed"}, headers=admin
        )
        rows = answer.json()["data"]
        return {r["payload"]: r["reason"] for r in rows} if len(rows) == 3 else None

    reasons = await wait_for_condition(dead_lettered, timeout_s=30, what="three dead letters")
    assert all("malformed NotificationMessage" in r for r in reasons.values()), reasons
    assert any("schema_version" in r for r in reasons.values()), reasons
    # The worker is alive and well: the next notification is delivered.
    accepted = await gw.post("/api/v1/notifications/", json=good)
    await wait_for_status(gw, accepted.json()["data"]["notification_id"], "delivered")
    assert (await system.smtp.next()).message["X-Request-ID"] == good["request_id"]
