"""The sending clients of the fault tests (tests/faults/test_db_redis.py, tests/cluster/
test_cluster_faults.py): concurrent clients POSTing notifications through an outage, as a
client should: a 503 is sent again, with the same request_id, after its Retry-After (or as
soon as the scenario says the dependency is back); a request a closed kept-alive connection
or a timeout failed is sent again too. Every answer is counted; any answer but 200/202 and
503 is a failure, noted in ``wrong`` (the test asserts it is empty)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.faults.harness import Run
from tests.scenario import notification

# How long one notification may take to be accepted, its 503s sent again included.
DEADLINE_S = 120.0


@dataclass
class Answers:
    """Every answer the clients got: status codes, and how long each 503 took."""

    codes: Counter[int] = field(default_factory=Counter)
    unavailable_s: list[float] = field(default_factory=list)
    slowest_s: float = 0.0
    without_retry_after: int = 0
    # Requests that got no answer: a kept-alive connection the server closed as it was
    # reused (uvicorn's 5 s keep-alive, after a pause), or a timeout (its time counts in
    # the slowest figures below, as an answer's would).
    transport_errors: int = 0
    # The slowest answer to a request sent while the dependency was away.
    slowest_in_outage_s: float = 0.0
    # One request at a time during the outage: the cost of a 503 itself, without the
    # queueing of the concurrent clients on a 2-core machine (the scenario fills it).
    alone_s: list[float] = field(default_factory=list)

    def quantile_503_s(self, q: float) -> float:
        ordered = sorted(self.unavailable_s)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0

    def p99_503_s(self) -> float:
        return self.quantile_503_s(0.99)


class Senders:
    """``clients`` clients sending ``n`` notifications of ``run`` (module docstring)."""

    def __init__(
        self, gw: httpx.AsyncClient, run: Run, user_id: str, code: str, *, n: int, clients: int
    ) -> None:
        self.gw, self.run, self.user_id, self.code = gw, run, user_id, code
        self.clients = clients
        self.answers = Answers()
        self.wrong: list[str] = []
        self._ids = iter(range(n))
        self.accepted = asyncio.Condition()
        self.outage = False  # set by the scenario while the dependency is away
        self.back = asyncio.Event()  # set by the scenario when it is back
        self.last_503_at = 0.0
        self.first_202_after: dict[float, float] = {}  # a mark -> the first 202 after it

    @property
    def codes(self) -> Counter[int]:
        return self.answers.codes

    async def wait_accepted(self, count: int, timeout_s: float = 90) -> None:
        async with self.accepted:
            await asyncio.wait_for(
                self.accepted.wait_for(lambda: len(self.run.sent) >= count), timeout_s
            )

    def _took(self, started: float, in_outage: bool) -> float:
        took = time.monotonic() - started
        self.answers.slowest_s = max(self.answers.slowest_s, took)
        if in_outage:
            self.answers.slowest_in_outage_s = max(self.answers.slowest_in_outage_s, took)
        return took

    async def _one(self, i: int) -> None:
        body = notification(self.user_id, self.code, request_id=f"{self.run.tag}{i:05d}")
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            started, in_outage = time.monotonic(), self.outage
            try:
                answer = await self.gw.post("/api/v1/notifications/", json=body, timeout=30)
            except httpx.TransportError:
                self._took(started, in_outage)
                self.answers.transport_errors += 1
                continue
            took = self._took(started, in_outage)
            self.answers.codes[answer.status_code] += 1
            if answer.status_code in (200, 202):  # 200: a repeat of one that was accepted
                now = time.monotonic()
                for mark in self.first_202_after:
                    if now >= mark and not self.first_202_after[mark]:
                        self.first_202_after[mark] = now
                async with self.accepted:
                    self.run.sent[body["request_id"]] = answer.json()["data"]["notification_id"]
                    self.accepted.notify_all()
                return
            if answer.status_code != 503:
                self.wrong.append(f"{answer.status_code} {answer.text[:300]}")
                return
            self.last_503_at = time.monotonic()
            self.answers.unavailable_s.append(took)
            if "Retry-After" not in answer.headers:
                self.answers.without_retry_after += 1
            # Again after Retry-After (1 s), or as soon as the dependency is back. Retrying
            # sooner only made the gateway's 2 cores, not the dependency, the bottleneck.
            with contextlib.suppress(TimeoutError):
                retry_after_s = float(answer.headers.get("Retry-After", "1"))
                await asyncio.wait_for(self.back.wait(), retry_after_s)
        self.wrong.append(f"{body['request_id']} not accepted in {DEADLINE_S:g} s")

    async def _client(self) -> None:
        while (i := next(self._ids, None)) is not None:
            await self._one(i)

    async def run_all(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(self.clients)))
