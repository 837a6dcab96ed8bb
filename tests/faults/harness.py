"""Counting, Jepsen-style: every notification a scenario sends is accounted for at the SMTP
server (delivered once, lost, duplicated, or unexpected) and in the gateway's statuses."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx

from tests.credentials import ADMIN, ENV
from tests.helpers import wait_for_condition
from tests.scenario import notification
from tests.smtp_peer import SmtpPeer
from tidings.core.retry import retry_queue
from tidings.core.settings import SERVICES
from tidings.core.topology import (
    DELAYABLE_ROUTES,
    EMAIL_QUEUE,
    FAILED_QUEUE,
    PUSH_QUEUE,
    RETRY_TIERS_MS,
    STATUS_QUEUE,
)
from tidings.supervisor import REPLICA_PORT_STEP, parse_replicas


@dataclass
class Run:
    """One scenario's notifications: request_id -> notification_id."""

    tag: str
    sent: dict[str, str]

    @classmethod
    def new(cls, name: str) -> Run:
        return cls(tag=f"{name}-{uuid.uuid4().hex[:8]}-", sent={})


async def send_many(
    gw: httpx.AsyncClient,
    run: Run,
    user_id: str,
    code: str,
    n: int,
    *,
    concurrency: int = 20,
    start: int = 0,
    retries: int = 0,
) -> int:
    """POST ``n`` notifications (each must be accepted with 202). With ``retries``, a request
    that failed in transit or with a 5xx (a gateway killed under it) is sent again, with the
    same request_id, as a client would; returns how many were retried."""
    ids = iter(range(start, start + n))
    refused: list[str] = []
    retried = 0

    async def post(body: dict[str, Any]) -> httpx.Response | str:
        nonlocal retried
        for attempt in range(retries + 1):
            retried += attempt > 0
            try:
                answer = await gw.post("/api/v1/notifications/", json=body)
            except httpx.TransportError as exc:
                failure: httpx.Response | str = f"{exc.__class__.__name__}: {exc}"
                continue
            if answer.status_code < 500:
                return answer
            failure = answer
        return failure

    async def client() -> None:
        for i in ids:
            body = notification(user_id, code, request_id=f"{run.tag}{i:05d}")
            answer = await post(body)
            if isinstance(answer, str) or answer.status_code != 202:
                refused.append(answer if isinstance(answer, str) else answer.text[:200])
                continue
            run.sent[body["request_id"]] = answer.json()["data"]["notification_id"]

    await asyncio.gather(*(client() for _ in range(concurrency)))
    assert not refused, f"{len(refused)} refused, e.g. {refused[:3]}"
    return retried


async def statuses(database_url: str, run: Run) -> Counter[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM gateway.notifications"
            " WHERE request_id LIKE $1 GROUP BY status",
            run.tag + "%",
        )
    finally:
        await conn.close()
    return Counter({r["status"]: r["n"] for r in rows})


async def wait_until_all(
    database_url: str, run: Run, status: str, *, timeout_s: float = 120
) -> None:
    async def done() -> bool:
        return (await statuses(database_url, run))[status] == len(run.sent)

    try:
        await wait_for_condition(done, timeout_s=timeout_s, interval_s=0.25, what=f"all {status}")
    except TimeoutError as exc:
        raise AssertionError(f"not all {status}: {await statuses(database_url, run)}") from exc


async def queue_depths(amqp_url: str) -> dict[str, int]:
    """Ready messages in every queue (passive declares: nothing is created)."""
    names = [EMAIL_QUEUE, PUSH_QUEUE, STATUS_QUEUE, FAILED_QUEUE] + [
        retry_queue(route, tier) for route in DELAYABLE_ROUTES for tier in RETRY_TIERS_MS
    ]
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        depths = {}
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            depths[name] = queue.declaration_result.message_count or 0
        return depths
    finally:
        await connection.close()


async def waiting_out(amqp_url: str, *routes: str, tier_ms_at_least: int = 0) -> int:
    """Copies parked in the retry tiers of ``routes`` (from ``tier_ms_at_least`` up):
    consumers waiting an outage out. The status and dead-letter consumers double each wait
    (core.bus.wait_out), so a copy in the 2 s tier has met the outage twice."""
    depths = await queue_depths(amqp_url)
    return sum(
        depths[retry_queue(route, tier)]
        for route in routes
        for tier in RETRY_TIERS_MS
        if tier >= tier_ms_at_least
    )


async def waited_twice(database_url: str, run: Run) -> bool:
    """Whether a notification of ``run`` has waited an outage out twice (two "waiting"
    entries in its history, core.flow): the outage outlasted a whole wait."""
    conn = await asyncpg.connect(database_url)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM gateway.notification_events e"
            " JOIN gateway.notifications n ON n.id = e.notification_id"
            " WHERE n.request_id LIKE $1 AND e.detail LIKE 'waiting %'"
            " GROUP BY e.notification_id HAVING count(*) >= 2 LIMIT 1",
            run.tag + "%",
        )
    finally:
        await conn.close()
    return found is not None


async def wait_quiet(amqp_url: str, timeout_s: float = 60) -> None:
    """Until no queue holds a message: nothing is left that could still be delivered."""

    async def quiet() -> bool:
        return not any((await queue_depths(amqp_url)).values())

    await wait_for_condition(quiet, timeout_s=timeout_s, interval_s=0.25, what="empty queues")


@dataclass
class Tally:
    delivered: int
    lost: list[str]
    duplicated: dict[str, int]
    unexpected: list[str]

    def __str__(self) -> str:
        return (
            f"delivered {self.delivered}, lost {len(self.lost)}, "
            f"duplicated {sum(self.duplicated.values())} (over {len(self.duplicated)}), "
            f"unexpected {len(self.unexpected)}"
        )


def tally(smtp: SmtpPeer, run: Run) -> Tally:
    seen = Counter(
        str(r.message["X-Request-ID"])
        for r in smtp.received
        if str(r.message["X-Request-ID"]).startswith(run.tag)
    )
    return Tally(
        delivered=sum(1 for rid in run.sent if seen[rid] >= 1),
        lost=[rid for rid in run.sent if seen[rid] == 0],
        duplicated={rid: c - 1 for rid, c in seen.items() if c > 1},
        unexpected=[rid for rid in seen if rid not in run.sent],
    )


async def history(gw: httpx.AsyncClient, notification_id: str) -> dict[str, Any]:
    answer = await gw.get(f"/api/v1/notifications/{notification_id}/")
    data: dict[str, Any] = answer.json()["data"]
    return data


def _replica_port(count: int) -> int:
    """A port free for every replica of a service: p, p + 100, p + 200, ..."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + REPLICA_PORT_STEP * (count - 1) > 65535:
            continue
        try:
            for k in range(1, count):
                with socket.socket() as other:
                    other.bind(("127.0.0.1", port + REPLICA_PORT_STEP * k))
        except OSError:
            continue
        return port
    raise AssertionError("no free port for every replica")


class TidingsUp:
    """``tidings up --replicas ...`` as a real OS process (one supervised process per
    replica) on the test's PostgreSQL, RabbitMQ, Redis and SMTP peer."""

    def __init__(self, log: Path, replicas: str, **env: str) -> None:
        self.replicas = replicas
        self.counts = parse_replicas(replicas)
        self.ports = {s: _replica_port(self.counts[s]) for s in SERVICES}
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        self.env |= {f"TIDINGS_{s.upper()}_PORT": str(p) for s, p in self.ports.items()}
        self.env |= ENV | {
            # Many notifications to one user, from one key: limits out of the way.
            "TIDINGS_RATE_LIMIT_PER_S": "1000000",
            "TIDINGS_RATE_LIMIT_BURST": "1000000",
            "TIDINGS_RECIPIENT_RATE_PER_S": "1000000",
            "TIDINGS_RECIPIENT_BURST": "1000000",
            "TIDINGS_LOG_FORMAT": "text",
            "TIDINGS_DATA_DIR": str(log.parent / "data"),
        }
        self.env |= env
        self.proc: asyncio.subprocess.Process | None = None
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.ports['gateway']}", timeout=10, headers=ADMIN
        )

    def urls(self, service: str) -> list[str]:
        """Every replica's address (the gateway's replicas share one)."""
        port = self.ports[service]
        count = 1 if service == "gateway" else self.counts[service]
        return [f"http://127.0.0.1:{port + REPLICA_PORT_STEP * k}" for k in range(count)]

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tidings",
                "up",
                "--replicas",
                self.replicas,
                env=self.env,
                stdout=out,
                stderr=out,
            )
        await wait_for_condition(self.healthy, timeout_s=90, what="every replica healthy")

    async def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"tidings up exited: {self.log.read_text()[-3000:]}")
        for service in SERVICES:
            for url in self.urls(service):
                answer = await self.client.get(f"{url}/health")
                if answer.status_code != 200:
                    return False
        return len(await self.pids("gateway")) == self.counts["gateway"]

    async def pids(self, service: str) -> set[int]:
        """The process ids answering for ``service``. The gateway's replicas share a port:
        asked over new connections until every replica has answered (bounded)."""
        if service != "gateway":
            return {
                (await self.client.get(f"{url}/health")).json()["data"]["pid"]
                for url in self.urls(service)
            }
        seen: set[int] = set()
        fresh = httpx.Limits(max_keepalive_connections=0)
        # The pid is an operator's detail of /health: asked with the admin key.
        async with httpx.AsyncClient(timeout=5, limits=fresh, headers=ADMIN) as once:
            for _ in range(200):
                answer = await once.get(f"{self.urls('gateway')[0]}/health")
                seen.add(answer.json()["data"]["pid"])
                if len(seen) == self.counts["gateway"]:
                    break
        return seen

    async def stop(self) -> int:
        await self.client.aclose()
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 60)
