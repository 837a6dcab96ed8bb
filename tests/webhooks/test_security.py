"""Secret rotation (either secret verifies during the grace period) and the SSRF rules:
private, loopback (without the development flag) and link-local endpoints refused at
registration, and at send time when a name's DNS answer changed since (a resolver the test
controls, given to the gateway's endpoints and to the worker)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.helpers import wait_for_condition
from tests.system import System
from tests.webhooks.conftest import WorkerHandle, worker_settings
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import ENDPOINTS, delete_all, register, send
from tidings.core.netguard import system_resolver
from tidings.webhooks.urls import check_url

GRACE_S = 3.0


class Resolver:
    """Names the test controls; every other name through the system's resolver."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}

    async def __call__(self, host: str, port: int) -> list[str]:
        if host in self.answers:
            return list(self.answers[host])
        return await system_resolver(host, port)


@pytest.fixture(scope="module")
def webhook_overrides() -> dict[str, Any]:
    return {"webhook_rotation_grace_s": GRACE_S}


@pytest.fixture(scope="module")
def resolver(system: System) -> Resolver:
    controlled = Resolver()
    system.apps["gateway"].state.gateway.webhook_endpoints.resolve = controlled
    return controlled


@pytest.fixture(scope="module")
async def worker(system: System, resolver: Resolver) -> AsyncIterator[WorkerHandle]:
    handle = await WorkerHandle(worker_settings(system), resolve=resolver).start()
    try:
        yield handle
    finally:
        await handle.stop()


async def test_either_secret_verifies_during_the_grace_period(
    system: System, worker: WorkerHandle, receiver: Receiver
) -> None:
    gw = system.gateway
    await delete_all(gw)
    endpoint = await register(gw, receiver, ["notification.delivered"])
    old = receiver.secrets[:]
    rotated = await gw.post(f"{ENDPOINTS}{endpoint['endpoint_id']}/rotate-secret/")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["data"]["secret"]
    assert new.startswith("whsec_") and [new] != old
    until = dt.datetime.fromisoformat(rotated.json()["data"]["previous_secret_until"])
    for holds in (old, [new]):
        receiver.secrets = holds
        want = len(receiver.accepted) + 1
        await send(gw, 1)
        await receiver.wait_for(lambda w=want: len(receiver.accepted) >= w, 30, "verified")
    assert receiver.unverified == 0

    # After the grace period only the new secret signs.
    async def grace_over() -> bool:
        return dt.datetime.now(dt.UTC) >= until

    grace_s = max(0.0, (until - dt.datetime.now(dt.UTC)).total_seconds())
    await wait_for_condition(grace_over, timeout_s=grace_s + 10, what="the grace period over")
    receiver.secrets = old
    await send(gw, 1)
    await receiver.wait_for(lambda: receiver.unverified >= 1, 30, "refused with the old")
    assert dt.datetime.now(dt.UTC) >= until


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.7/hook",
        "https://192.168.1.10/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://private.test/hook",  # resolves to 10.1.2.3 (below)
        "https://metadata.test/hook",  # resolves to 169.254.169.254
        "https://printer.local/hook",
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
    ],
)
async def test_non_public_endpoints_are_refused_at_registration(
    system: System, resolver: Resolver, url: str
) -> None:
    resolver.answers |= {"private.test": ["10.1.2.3"], "metadata.test": ["169.254.169.254"]}
    answer = await system.gateway.post(ENDPOINTS, json={"url": url, "events": ["*"]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["success"] is False and "url" in answer.json()["error"]


async def test_loopback_and_plain_http_need_the_development_flag() -> None:
    for url in ("http://127.0.0.1:9/hook", "https://127.0.0.1/hook", "http://localhost/x"):
        with pytest.raises(ValueError, match=r"non-public|https only"):
            await check_url(url, allow_insecure=False)
        assert await check_url(url, allow_insecure=True) == url
    with pytest.raises(ValueError, match="https only"):
        await check_url("http://93.184.215.14/hook", allow_insecure=True)


@pytest.fixture
def without_the_flag(system: System) -> Iterator[None]:
    """The gateway as it runs without TIDINGS_WEBHOOK_ALLOW_INSECURE (the module's system has
    it on, as every webhooks test needs for its loopback receiver)."""
    endpoints = system.apps["gateway"].state.gateway.webhook_endpoints
    endpoints.allow_insecure = False
    try:
        yield
    finally:
        endpoints.allow_insecure = True


@pytest.mark.usefixtures("without_the_flag")
async def test_loopback_is_refused_through_the_api_without_the_flag(
    system: System, receiver: Receiver
) -> None:
    gw = system.gateway
    await delete_all(gw)
    loopback = (
        receiver.url,  # http://127.0.0.1:…
        f"https://127.0.0.1:{receiver.port}/hook",
        "https://[::1]/hook",
        "https://localhost/hook",
        "http://localhost/hook",
    )
    for url in loopback:
        answer = await gw.post(ENDPOINTS, json={"url": url, "events": ["*"]})
        assert answer.status_code == 422, (url, answer.text)
        assert "url" in answer.json()["error"]
    # Nor may an endpoint registered elsewhere be moved to loopback.
    made = await gw.post(ENDPOINTS, json={"url": "https://93.184.215.14/hook", "events": ["*"]})
    assert made.status_code == 201, made.text
    moved = await gw.patch(
        f"{ENDPOINTS}{made.json()['data']['endpoint_id']}/", json={"url": receiver.url}
    )
    assert moved.status_code == 422, moved.text
    listed = await gw.get(ENDPOINTS)
    assert [e["url"] for e in listed.json()["data"]] == ["https://93.184.215.14/hook"]
    await delete_all(gw)


async def test_a_dns_answer_that_changed_since_registration_is_refused_at_send_time(
    system: System, worker: WorkerHandle, receiver: Receiver, resolver: Resolver
) -> None:
    gw = system.gateway
    await delete_all(gw)
    host = "rebinding.test"
    resolver.answers[host] = ["127.0.0.1"]  # loopback: allowed under the development flag
    # An open connection was checked when it was made; a new answer matters to new ones.
    receiver.close_connections = True
    made = await gw.post(
        ENDPOINTS,
        json={"url": f"http://{host}:{receiver.port}{receiver.path}", "events": ["*"]},
    )
    assert made.status_code == 201, made.text
    receiver.secrets.append(made.json()["data"]["secret"])
    endpoint_id = made.json()["data"]["endpoint_id"]
    await send(gw, 1)
    await receiver.wait_for(lambda: len(receiver.accepted) >= 2, 30, "queued and delivered")
    for rebound in ("10.1.2.3", "169.254.169.254"):
        resolver.answers[host] = [rebound]
        seen = sum(receiver.requests.values())
        [nid] = await send(gw, 1)

        async def refused(nid: str = nid) -> list[dict[str, Any]]:
            page = await gw.get(f"{ENDPOINTS}{endpoint_id}/messages/?limit=100")
            return [
                m
                for m in page.json()["data"]
                if m["payload"]["data"].get("notification_id") == nid
                and any("non-public" in (a["error"] or "") for a in m["attempt_log"])
            ]

        found = await wait_for_condition(refused, timeout_s=30, what=f"refused for {rebound}")
        assert found and all(m["state"] == "pending" for m in found)
        assert sum(receiver.requests.values()) == seen, "nothing reached the receiver"
