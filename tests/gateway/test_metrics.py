"""/metrics on every service: Prometheus text with the figures the spec asks for."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.credentials import ADMIN
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


async def test_every_service_exposes_the_figures(system: System) -> None:
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    nid = (
        await gw.post(
            "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
        )
    ).json()["data"]["notification_id"]
    await wait_for_status(gw, nid, "delivered")
    # A retry (451 once) and a permanent failure (a template that cannot render), so the
    # error, retry and dead-letter figures have something to count.
    system.smtp.refuse_first = 1
    retried = (
        await gw.post(
            "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
        )
    ).json()["data"]["notification_id"]
    await wait_for_status(gw, retried, "delivered")
    system.smtp.refuse_first = 0
    broken = await create_template(gw, body="<p>{{ 1 / 0 }}</p>")
    failed = (
        await gw.post("/api/v1/notifications/", json=notification(user["user_id"], broken["code"]))
    ).json()["data"]["notification_id"]
    await wait_for_status(gw, failed, "failed")
    # /metrics needs a credential (tests/gateway/test_open_routes.py): here the admin key.
    async with httpx.AsyncClient(timeout=10, headers=ADMIN) as client:
        for service, port in system.ports.items():
            answer = await client.get(f"http://127.0.0.1:{port}/metrics")
            assert answer.status_code == 200, service
            assert answer.headers["content-type"].startswith("text/plain")
        m = samples(answer.text)  # one process: every service's figures are in each
    routes = {s[0]["route"] for s in m["tidings_http_request_duration_seconds_count"]}
    assert "/api/v1/notifications/" in routes
    published = {s[0]["routing_key"] for s in m["tidings_messages_published_total"]}
    assert {"email", "status"} <= published
    consumed = {(s[0]["queue"], s[0]["outcome"]) for s in m["tidings_messages_consumed_total"]}
    assert ("email.queue", "acked") in consumed
    stages = {s[0]["stage"] for s in m["tidings_stage_seconds_count"] if s[0]["channel"] == "email"}
    assert {"queued", "sent", "delivered"} <= stages
    assert any(s[0]["status"] == "delivered" for s in m["tidings_notifications_total"])
    breakers = {(s[0]["service"], s[0]["breaker"]) for s in m["tidings_breaker_state"]}
    assert ("email", "smtp") in breakers and ("gateway", "users") in breakers
    assert any(s[0]["cache"] == "templates" for s in m["tidings_cache_requests_total"])
    depths = {s[0]["queue"] for s in m["tidings_queue_depth"]}
    assert {"email.queue", "push.queue", "failed.queue"} <= depths
    # Every counter and histogram family has counted something after this run (the gauges,
    # queue depth and breaker state, are rightly 0 on an idle system with closed breakers).
    for family in (
        "tidings_http_request_duration_seconds_count",
        "tidings_messages_published_total",
        "tidings_messages_consumed_total",
        "tidings_notifications_total",
        "tidings_stage_seconds_count",
        "tidings_delivery_errors_total",
        "tidings_retries_total",
        "tidings_cache_requests_total",
    ):
        assert sum(value for _, value in m[family]) > 0, family
    assert ("email.queue", "dead_lettered") in consumed
    kinds = {s[0]["kind"] for s in m["tidings_delivery_errors_total"] if s[1] > 0}
    assert {"transient", "permanent"} <= kinds
