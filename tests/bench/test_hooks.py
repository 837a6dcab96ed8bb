"""The benchmark's webhook receiver, fed real HTTP over a socket (keep-alive, two requests
in one write): it counts every request by ``webhook-id``, so a duplicate, a lost event and a
refused request are each seen. And ``tidings bench --webhook-receiver`` / ``--webhook-down`` /
``--webhook-slow`` end to end on the embedded default, small n (nothing about speed asserted)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.bench.support import run_bench
from tidings.bench.hooks import HookTally, serve


def event(nid: str, event_type: str) -> bytes:
    return orjson.dumps({"type": event_type, "timestamp": "x", "data": {"notification_id": nid}})


def request(webhook_id: str, body: bytes) -> bytes:
    head = (
        f"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Webhook-Id: {webhook_id}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@pytest.mark.timeout(20)
async def test_the_receiver_counts_by_webhook_id() -> None:
    tally = HookTally()
    server = await serve(tally.arrive)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # Two requests in one write, the second's body split across writes.
        second = request("msg_2", event("n-1", "notification.delivered"))
        writer.write(request("msg_1", event("n-1", "notification.queued")) + second[:-5])
        await writer.drain()
        writer.write(second[-5:])
        for _ in range(2):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 204")
        writer.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            # The same webhook-id again (a retry after a success): a duplicate.
            again = await client.post(
                "/hook",
                content=event("n-1", "notification.delivered"),
                headers={"webhook-id": "msg_2"},
            )
            assert again.status_code == 204
            await client.post(
                "/hook", content=event("n-2", "notification.queued"), headers={"webhook-id": "m3"}
            )
    finally:
        server.close()
    # n-2's delivered event never arrived: lost.
    counts = tally.count({"n-1", "n-2"})
    assert (counts.expected, counts.received, counts.lost, counts.duplicated) == (4, 3, 1, 1)
    assert (counts.requests, counts.refused, counts.webhook_ids) == (4, 0, 3)


@pytest.mark.timeout(20)
async def test_a_receiver_that_is_down_refuses_and_counts() -> None:
    tally = HookTally()
    server = await serve(tally.arrive, down=True)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(2):
                answer = await client.post(
                    "/hook",
                    content=event("n-1", "notification.queued"),
                    headers={"webhook-id": "msg_1"},
                )
                assert answer.status_code == 503
    finally:
        server.close()
    counts = tally.count({"n-1"})
    assert (counts.received, counts.lost, counts.requests, counts.refused) == (0, 2, 2, 2)


@pytest.mark.timeout(20)
async def test_a_slow_receiver_answers_in_order_after_its_delay() -> None:
    tally = HookTally()
    server = await serve(tally.arrive, slow_ms=300)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        writer.write(request("msg_1", event("n-1", "notification.queued")))
        writer.write(request("msg_2", event("n-1", "notification.delivered")))
        await writer.drain()
        for _ in range(2):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 204")
        # Held, not refused: the answers came no sooner than the delay (the loop's clock).
        assert loop.time() - started >= 0.3
        writer.close()
    finally:
        server.close()
    counts = tally.count({"n-1"})
    assert (counts.received, counts.lost, counts.requests, counts.refused) == (2, 0, 2, 0)


def bench(tmp_path: Path, *more: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = run_bench(tmp_path, "-n", "20", "-c", "5", "--users", "5", "--plot", "", *more)
    out = tmp_path / "artifacts" / "bench"
    return result, json.loads((out / "report.json").read_text())


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_bench_with_its_webhook_receiver(tmp_path: Path) -> None:
    result, data = bench(tmp_path, "--webhook-receiver")
    assert "webhooks to the bench's receiver" in data["stack"]
    hooks = data["webhooks"]
    assert (hooks["expected"], hooks["received"], hooks["lost"], hooks["duplicated"]) == (
        40,
        40,
        0,
        0,
    ), hooks
    assert "webhooks: 40 of 40 events received, 0 lost, 0 duplicated" in result.stdout
    assert "bench webhook receiver" in data["phases"][0]["cpu_ms"]
    report = (tmp_path / "artifacts" / "bench" / "report.md").read_text()
    assert "**Webhooks: 40 of 40 events received, 0 lost, 0 duplicated" in report


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_bench_with_its_webhook_receiver_down(tmp_path: Path) -> None:
    result, data = bench(tmp_path, "--webhook-down")
    assert "webhooks: the receiver was down (503 to every request)" in result.stdout
    hooks = data["webhooks"]
    assert hooks["received"] == 0 and hooks["requests"] == hooks["refused"], hooks
    assert data["phases"][0]["lost"] == 0 and data["phases"][0]["delivered"] == 20
    report = (tmp_path / "artifacts" / "bench" / "report.md").read_text()
    assert "**Webhooks: the receiver was down" in report


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_bench_with_its_webhook_receiver_slow(tmp_path: Path) -> None:
    result, data = bench(tmp_path, "--webhook-slow", "2000")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "webhooks: the receiver was slow (204 after 2000 ms)" in result.stdout
    assert "slow (2000 ms)" in data["stack"]
    assert data["phases"][0]["lost"] == 0 and data["phases"][0]["delivered"] == 20
    assert data["webhooks"]["duplicated"] == 0, data["webhooks"]
