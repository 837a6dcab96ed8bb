"""The webhooks worker's two loops: fan-out (captured events → one message per subscribed
endpoint) and delivery (due messages → attempts). Any number of worker processes share the
tables: fan-out rows are taken with ``FOR UPDATE SKIP LOCKED``, messages by a conditional
update (the lease), so each attempt is made by one process. A first attempt needs no claim:
the fan-out writes the messages it has room for already leased to itself and sends them.

Per endpoint, in each process: at most ``webhook_endpoint_concurrency`` requests in flight,
and a circuit breaker (core.breaker); while it is open the endpoint's messages wait where
they are (no attempt spent, no slot held). A retry waits in the table (``next_attempt_at``),
never in a task."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import random
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tidings.core.batching import Batcher
from tidings.core.breaker import BreakerOpen, CircuitBreaker
from tidings.core.db import utcnow
from tidings.core.errors import DependencyUnavailable
from tidings.core.tasks import cancel_and_wait
from tidings.webhooks.attempts import Claimed, Outcome, Room, Settled
from tidings.webhooks.sender import Sender
from tidings.webhooks.settings import WebhooksSettings
from tidings.webhooks.store import WebhookStore

log = logging.getLogger(__name__)
# After a wake-up, how long the claim waits for other attempts ending at about the same time.
CLAIM_GATHER_S = 0.005
# An endpoint's pace (WebhookWorker.prefetch_of): the slowest of its latest requests, and
# the least a request is counted as taking.
PACE_WINDOW = 32
PACE_FLOOR_S = 0.01


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
        # Claimed and not yet settled, per endpoint (waiting for a slot, or in flight).
        self.held: Counter[uuid.UUID] = Counter()
        self.slots: dict[uuid.UUID, asyncio.Semaphore] = {}
        self.all_slots = asyncio.Semaphore(settings.webhook_concurrency)
        self.breakers: dict[uuid.UUID, CircuitBreaker] = {}
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.sent = Counter[str]()  # outcomes, for /health's facts and the tests
        self.purged = 0  # messages deleted by retention
        # Outcomes and releases written together (group commit, core.batching): one
        # transaction, one statement per kind of write, for every attempt that ended meanwhile.
        self.recorder: Batcher[Settled, dt.datetime | None] = Batcher(self.store.record_many)
        self.releaser: Batcher[tuple[int, dt.datetime, dt.datetime], None] = Batcher(
            self._release_many
        )
        # How many requests' worth of messages an endpoint may hold claimed, per slot: as many
        # as can be sent one after the other within the lease even if each takes the whole
        # deadline (a message that would outlive its lease is released, not sent). An
        # endpoint that has answered holds more (``prefetch_of``).
        depth = max(1, int(settings.webhook_lease_s // settings.webhook_timeout_s) - 1)
        self.prefetch = settings.webhook_endpoint_concurrency * depth
        # The whole process's bound: a fan-out's batch or two at least.
        self.prefetch_all = max(
            settings.webhook_concurrency * depth, 2 * settings.webhook_batch_size
        )
        # The durations of each endpoint's latest requests, in seconds (PACE_WINDOW each).
        self.pace: dict[uuid.UUID, deque[float]] = {}
        # Held while the room is reckoned and taken (a fan-out's or a claim's), so that the
        # two loops never both take the same room.
        self._taking = asyncio.Lock()

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._fan_out_loop(), name="webhooks-fan-out"),
            asyncio.create_task(self._deliver_loop(), name="webhooks-deliver"),
            asyncio.create_task(self._retention_loop(), name="webhooks-retention"),
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
        """Captured events into messages, those there is room for claimed as they are written
        and sent at once; the delivery loop is woken for the rest."""
        async with self._taking:
            free = self.prefetch_all - sum(self.held.values())
            room = Room(self._room(), self.prefetch, max(0, free), self.settings.webhook_lease_s)
            fanned = await self.store.fan_out(self.settings.webhook_batch_size, room)
            self._send(fanned.claimed, fanned.endpoints)
        if fanned.made > len(fanned.claimed):
            self.wake.set()
        if fanned.events < self.settings.webhook_batch_size:
            await asyncio.sleep(self.settings.webhook_poll_s)

    def prefetch_of(self, endpoint_id: uuid.UUID) -> int:
        """How many messages the endpoint may hold claimed: as many as its slots can send
        within the lease at the pace of the slowest of its latest requests (the deadline
        until it has answered), ``prefetch`` at least, and at most the process's bound less
        ``prefetch`` (room left for another endpoint); so that
        a fast receiver's messages are claimed by the fan-out that writes them, not by a
        claim statement after it. A guess that proves wrong costs no duplicate: a message
        that would outlive its lease waiting for a slot is released unsent (``_attempt``)."""
        recent = self.pace.get(endpoint_id)
        if not recent:
            return self.prefetch
        window = self.settings.webhook_lease_s - self.settings.webhook_timeout_s - 1
        depth = int(window // max(max(recent), PACE_FLOOR_S))
        room = self.settings.webhook_endpoint_concurrency * depth
        return max(self.prefetch, min(room, self.prefetch_all - self.prefetch))

    def _room(self) -> dict[uuid.UUID, int]:
        """How many more messages each endpoint may have claimed (one not named: the whole
        ``prefetch``). A breaker that is open, or probing, holds its endpoint's at none;
        half open, one."""
        room = {e: self.prefetch_of(e) - self.held[e] for e in self.held.keys() | self.pace.keys()}
        for endpoint_id, breaker in self.breakers.items():
            if breaker.state == "open" or (breaker.state == "half_open" and breaker.probing):
                room[endpoint_id] = 0
            elif breaker.state == "half_open":
                room[endpoint_id] = min(1, room.get(endpoint_id, self.prefetch))
        return room

    async def _deliver_loop(self) -> None:
        await self._forever(self._deliver, "claim")

    async def _deliver(self) -> None:
        """Claim what there is room for, in one statement, and wait: a claim follows when an
        endpoint has sent half of what it holds (or all of it), when new messages were fanned
        out, or after ``webhook_poll_s``; a short gather lets the attempts that end together
        go in one claim."""
        async with self._taking:  # the room is the fan-out's or this claim's, not both's
            free = self.prefetch_all - sum(self.held.values())
            claimed: list[Claimed] = []
            if free > 0:
                claimed = await self.store.claim(
                    self._room(),
                    self.prefetch,
                    min(free, self.settings.webhook_batch_size),
                    self.settings.webhook_lease_s,
                )
            if claimed:
                ids = list({m.endpoint_id for m in claimed})
                self._send(claimed, await self.store.endpoints(ids))
        if claimed and len(claimed) == min(free, self.settings.webhook_batch_size) < free:
            return  # a full batch, and room for more: claim again at once
        await self._pause()
        await asyncio.sleep(CLAIM_GATHER_S)

    def _send(self, claimed: list[Claimed], endpoints: Mapping[uuid.UUID, Any]) -> None:
        """An attempt's task for each claimed message (a slot is taken inside it)."""
        for message in claimed:
            self.held[message.endpoint_id] += 1
            task = asyncio.create_task(self._attempt(message, endpoints.get(message.endpoint_id)))
            self.tasks.add(task)
            task.add_done_callback(functools.partial(self._done, message.endpoint_id))

    def _done(self, endpoint_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.held[endpoint_id] -= 1
        left = self.held[endpoint_id]
        if left <= 0:
            del self.held[endpoint_id]
            self.slots.pop(endpoint_id, None)
        if left <= 0 or left == self.prefetch // 2:
            self.wake.set()

    async def _attempt(self, message: Claimed, endpoint: object) -> None:
        try:
            if endpoint is None:  # deleted meanwhile: its messages went with it
                self.pace.pop(message.endpoint_id, None)
                return
            slots = self.slots.get(message.endpoint_id)
            if slots is None:
                slots = asyncio.Semaphore(self.settings.webhook_endpoint_concurrency)
                self.slots[message.endpoint_id] = slots
            async with slots, self.all_slots:
                # Against the lease's own end (it began before the claim's statement and its
                # commit, however long those took), not the time since the claim returned.
                margin = dt.timedelta(seconds=self.settings.webhook_timeout_s + 1)
                if utcnow() + margin > message.lease_until:
                    # It would outlive its lease: back, due now, unsent (never a duplicate).
                    await self.releaser.submit((message.id, message.lease_until, utcnow()))
                    return
                breaker = self.breaker(message.endpoint_id)
                try:
                    breaker.before_call()
                except BreakerOpen as exc:
                    at = utcnow() + dt.timedelta(seconds=exc.retry_after_s)
                    await self.releaser.submit((message.id, message.lease_until, at))
                    return
                outcome = await self.sender.send(message, endpoint)
            pace = self.pace.get(message.endpoint_id)
            if pace is None:
                pace = self.pace[message.endpoint_id] = deque(maxlen=PACE_WINDOW)
            pace.append(outcome.duration_ms / 1000)
            if trips_breaker(outcome):
                breaker.record_failure()
            else:
                breaker.record_success()
            await self._settle(message, outcome)
        except Exception:
            # The lease brings the message back; nothing is lost.
            log.exception("webhook attempt %s failed", message.webhook_id)

    async def _release_many(self, items: list[tuple[int, dt.datetime, dt.datetime]]) -> list[None]:
        await self.store.release_many(items)
        return [None] * len(items)

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
            await self.recorder.submit(Settled(message, outcome, "delivered", None, True))
            return
        if code == 410:
            self.sent["gone"] += 1
            await self.recorder.submit(Settled(message, outcome, "failed", None, False))
            await self._disable(message.endpoint_id, "the endpoint answered 410 Gone")
            return
        wait = self.next_wait_s(done)
        self.sent["retried" if wait is not None else "failed"] += 1
        next_at = None if wait is None else utcnow() + dt.timedelta(seconds=wait)
        state = "pending" if wait is not None else "failed"
        since = await self.recorder.submit(Settled(message, outcome, state, next_at, False))
        limit = self.settings.webhook_disable_after_s
        if since is not None and (utcnow() - since).total_seconds() > limit:
            await self._disable(
                message.endpoint_id, f"no success for {limit:g} s since {since:%Y-%m-%dT%H:%M:%SZ}"
            )

    async def _retention_loop(self) -> None:
        await self._forever(self._retention, "retention")

    async def _retention(self) -> None:
        """Delivered messages older than ``webhook_retention_s``, with their attempts, deleted
        ``webhook_retention_batch`` at a time (one short transaction each) until none is left,
        then again every ``webhook_retention_every_s``."""
        keep = dt.timedelta(seconds=self.settings.webhook_retention_s)
        limit = self.settings.webhook_retention_batch
        while True:
            n = await self.store.purge_delivered(utcnow() - keep, limit)
            self.purged += n
            if n < limit:
                break
            await asyncio.sleep(0)  # the other loops' turn between batches
        await asyncio.sleep(self.settings.webhook_retention_every_s)

    async def _disable(self, endpoint_id: uuid.UUID, reason: str) -> None:
        if await self.store.disable(endpoint_id, reason):
            self.pace.pop(endpoint_id, None)
            log.warning(
                "webhook endpoint %s disabled: %s",
                endpoint_id,
                reason,
                extra={"endpoint_id": str(endpoint_id)},
            )
