"""The webhooks worker's two loops: fan-out (captured events → one message per subscribed
endpoint) and delivery (due messages → attempts). Any number of worker processes share the
tables: fan-out rows are taken with ``FOR UPDATE SKIP LOCKED``, messages by a conditional
update (the lease), so each attempt is made by one process.

Per endpoint, in each process: at most ``webhook_endpoint_concurrency`` requests in flight,
and a circuit breaker (core.breaker); while it is open the endpoint's messages wait where
they are (no attempt spent, no slot held). A retry waits in the table (``next_attempt_at``),
never in a task."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

from tidings.core.breaker import BreakerOpen, CircuitBreaker
from tidings.core.db import utcnow
from tidings.core.errors import DependencyUnavailable
from tidings.core.tasks import cancel_and_wait
from tidings.webhooks.sender import Sender
from tidings.webhooks.settings import WebhooksSettings
from tidings.webhooks.store import Claimed, Outcome, WebhookStore

log = logging.getLogger(__name__)


def trips_breaker(outcome: Outcome) -> bool:
    """No answer (timeout, refused, reset), 5xx or 429: the receiver is in trouble. A
    refused address (the SSRF guard) is ours to refuse, not the receiver's failure."""
    if outcome.status_code is None:
        return not (outcome.error or "").startswith("refused:")
    return outcome.status_code >= 500 or outcome.status_code == 429


class WebhookWorker:
    def __init__(self, store: WebhookStore, sender: Sender, settings: WebhooksSettings) -> None:
        self.store = store
        self.sender = sender
        self.settings = settings
        self.in_flight: Counter[uuid.UUID] = Counter()
        self.breakers: dict[uuid.UUID, CircuitBreaker] = {}
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.sent = Counter[str]()  # outcomes, for /health's facts and the tests

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._fan_out_loop(), name="webhooks-fan-out"),
            asyncio.create_task(self._deliver_loop(), name="webhooks-deliver"),
        ]

    async def stop(self, grace_s: float) -> None:
        for task in self._loops:
            await cancel_and_wait(task)
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=grace_s)
        for task in list(self.tasks):
            await cancel_and_wait(task)

    def breaker(self, endpoint_id: uuid.UUID) -> CircuitBreaker:
        found = self.breakers.get(endpoint_id)
        if found is None:
            found = CircuitBreaker(
                f"webhook-{endpoint_id}",
                failure_threshold=self.settings.webhook_breaker_failures,
                reset_timeout_s=self.settings.webhook_breaker_reset_s,
            )
            self.breakers[endpoint_id] = found
        return found

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), self.settings.webhook_poll_s)
        self.wake.clear()

    async def _forever(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        """``step`` again and again; a failure is logged and retried a second later."""
        while True:
            try:
                await step()
            except (DependencyUnavailable, OSError) as exc:
                log.warning("webhook %s failed, will retry: %s", what, exc)
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("webhook %s failed, will retry", what)
                await asyncio.sleep(1.0)

    async def _fan_out_loop(self) -> None:
        await self._forever(self._fan_out, "fan-out")

    async def _fan_out(self) -> None:
        n = await self.store.fan_out(self.settings.webhook_batch_size)
        if n:
            self.wake.set()
        if n < self.settings.webhook_batch_size:
            await asyncio.sleep(self.settings.webhook_poll_s)

    def _room(self) -> dict[uuid.UUID, int]:
        bound = self.settings.webhook_endpoint_concurrency
        room = {e: bound - n for e, n in self.in_flight.items()}
        for endpoint_id, breaker in self.breakers.items():
            if breaker.state == "open" or (breaker.state == "half_open" and breaker.probing):
                room[endpoint_id] = 0
            elif breaker.state == "half_open":
                room[endpoint_id] = min(1, room.get(endpoint_id, bound))
        return room

    async def _deliver_loop(self) -> None:
        await self._forever(self._deliver, "claim")

    async def _deliver(self) -> None:
        free = self.settings.webhook_concurrency - len(self.tasks)
        claimed: list[Claimed] = []
        if free > 0:
            claimed = await self.store.claim(
                self._room(),
                self.settings.webhook_endpoint_concurrency,
                min(free, self.settings.webhook_batch_size),
                self.settings.webhook_lease_s,
            )
        if not claimed:
            await self._pause()
            return
        endpoints = await self.store.endpoints(list({m.endpoint_id for m in claimed}))
        for message in claimed:
            self.in_flight[message.endpoint_id] += 1
            task = asyncio.create_task(self._attempt(message, endpoints.get(message.endpoint_id)))
            self.tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.wake.set()

    async def _attempt(self, message: Claimed, endpoint: object) -> None:
        try:
            if endpoint is None:  # deleted meanwhile: its messages went with it
                return
            breaker = self.breaker(message.endpoint_id)
            try:
                breaker.before_call()
            except BreakerOpen as exc:
                await self.store.release(
                    message.id, utcnow() + dt.timedelta(seconds=exc.retry_after_s)
                )
                return
            outcome = await self.sender.send(message, endpoint)
            if trips_breaker(outcome):
                breaker.record_failure()
            else:
                breaker.record_success()
            await self._settle(message, outcome)
        except Exception:
            # The lease brings the message back; nothing is lost.
            log.exception("webhook attempt %s failed", message.webhook_id)
        finally:
            self.in_flight[message.endpoint_id] -= 1
            if self.in_flight[message.endpoint_id] <= 0:
                del self.in_flight[message.endpoint_id]

    def next_wait_s(self, attempts_done: int) -> float | None:
        """The wait after the ``attempts_done``-th failed attempt, jittered; None: no more."""
        schedule = self.settings.webhook_retry_schedule_s
        if attempts_done > len(schedule):
            return None
        spread = self.settings.webhook_retry_jitter
        return schedule[attempts_done - 1] * random.uniform(1 - spread, 1 + spread)

    async def _settle(self, message: Claimed, outcome: Outcome) -> None:
        code = outcome.status_code
        done = message.attempts + 1
        if code is not None and 200 <= code < 300:
            self.sent["delivered"] += 1
            await self.store.record(message, outcome, state="delivered", next_at=None, success=True)
            return
        if code == 410:
            self.sent["gone"] += 1
            await self.store.record(message, outcome, state="failed", next_at=None, success=False)
            await self._disable(message.endpoint_id, "the endpoint answered 410 Gone")
            return
        wait = self.next_wait_s(done)
        self.sent["retried" if wait is not None else "failed"] += 1
        next_at = None if wait is None else utcnow() + dt.timedelta(seconds=wait)
        since = await self.store.record(
            message,
            outcome,
            state="pending" if wait is not None else "failed",
            next_at=next_at,
            success=False,
        )
        limit = self.settings.webhook_disable_after_s
        if since is not None and (utcnow() - since).total_seconds() > limit:
            await self._disable(
                message.endpoint_id, f"no success for {limit:g} s since {since:%Y-%m-%dT%H:%M:%SZ}"
            )

    async def _disable(self, endpoint_id: uuid.UUID, reason: str) -> None:
        if await self.store.disable(endpoint_id, reason):
            log.warning(
                "webhook endpoint %s disabled: %s",
                endpoint_id,
                reason,
                extra={"endpoint_id": str(endpoint_id)},
            )
