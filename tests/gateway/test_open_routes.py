"""What is open is chosen, in every service's app (core.web.create_service_app): /metrics
needs the metrics token or the admin key; /health tells anyone up or down and only the
operator's credentials the details; its checks run at most once a second however many
callers there are; X-Forwarded-For is believed only from a trusted proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request

from tests.credentials import ADMIN, ADMIN_KEY, SERVICE_TOKEN, SETTINGS
from tests.helpers import assert_envelope
from tidings.core.access import client_address
from tidings.core.settings import TidingsSettings
from tidings.core.web import HealthRegistry, create_service_app

METRICS_TOKEN = "test-metrics-token-0123456789"


@asynccontextmanager
async def nothing(app: FastAPI) -> AsyncIterator[None]:
    yield


def make_app(**overrides: Any) -> FastAPI:
    settings = TidingsSettings(**{**SETTINGS, "metrics_token": METRICS_TOKEN, **overrides})
    app = create_service_app("email", max_body_bytes=1024, lifespan=nothing, settings=settings)

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, str]:
        return {"address": client_address(request)}

    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    app: FastAPI, path: str, headers: dict[str, str] | None = None, peer: str = "10.9.9.9"
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(peer, 4321))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


async def test_metrics_needs_the_metrics_token_or_the_admin_key() -> None:
    app = make_app()
    for headers in ({}, bearer("wrong"), bearer(SERVICE_TOKEN), {"Authorization": METRICS_TOKEN}):
        refused = await call(app, "/metrics", headers)
        assert refused.status_code == 401, (headers, refused.text)
        assert_envelope(refused.json(), success=False)
    for token in (METRICS_TOKEN, ADMIN_KEY):
        answer = await call(app, "/metrics", bearer(token))
        assert answer.status_code == 200
        assert "tidings_http_request_duration_seconds" in answer.text
    # Without a metrics token set, the admin key only.
    bare = make_app(metrics_token=None)
    assert (await call(bare, "/metrics", bearer(METRICS_TOKEN))).status_code == 401
    assert (await call(bare, "/metrics", ADMIN)).status_code == 200


async def test_health_tells_anyone_only_up_or_down() -> None:
    app = make_app()

    async def broken() -> None:
        raise ConnectionError("cannot reach amqp://guest@10.0.0.7:5672/secret-vhost")

    app.state.health.add("bus", broken)
    anonymous = await call(app, "/health")
    assert anonymous.status_code == 503
    assert_envelope(anonymous.json(), success=False)
    assert anonymous.json()["data"] is None
    assert "10.0.0.7" not in anonymous.text and "pid" not in anonymous.text
    for token in (ADMIN_KEY, SERVICE_TOKEN):
        detailed = await call(app, "/health", bearer(token))
        assert detailed.status_code == 503
        assert "10.0.0.7" in detailed.json()["error"]
    healthy = make_app()
    up = await call(healthy, "/health")
    assert up.status_code == 200
    assert up.json()["data"] == {"status": "ok"}
    assert set((await call(healthy, "/health", ADMIN)).json()["data"]) >= {
        "service",
        "pid",
        "instance_id",
        "checks",
    }


async def test_health_checks_run_at_most_once_per_max_age() -> None:
    health = HealthRegistry(max_age_s=60)
    calls = 0

    async def check() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)  # a real check awaits I/O: callers pile up meanwhile

    health.add("db", check)
    results = await asyncio.gather(*(health.run() for _ in range(50)))
    results += [await health.run() for _ in range(50)]
    assert calls == 1 and health.runs == 1
    assert all(r == {"db": "ok"} for r in results)
    # Past the age, the next caller runs them again.
    health.max_age_s = 0
    await health.run()
    assert calls == 2


async def test_forwarded_for_only_from_a_trusted_proxy() -> None:
    spoofed = {"X-Forwarded-For": "203.0.113.5"}
    # Not configured: the header is nobody's word, the client is the TCP peer.
    plain = make_app()
    assert (await call(plain, "/whoami", spoofed, peer="127.0.0.1")).json() == {
        "address": "127.0.0.1"
    }
    trusting = make_app(forwarded_allow_ips="10.0.0.0/8, 127.0.0.1")
    through_proxy = await call(trusting, "/whoami", spoofed, peer="10.1.2.3")
    assert through_proxy.json() == {"address": "203.0.113.5"}
    # A peer that is not one of the proxies cannot choose its address.
    direct = await call(trusting, "/whoami", spoofed, peer="198.51.100.7")
    assert direct.json() == {"address": "198.51.100.7"}
