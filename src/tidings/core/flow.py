"""The flow of one message in a delivery worker: claim, deliver, then exactly one of recorded
sent, a retry, a wait, or failed and dead-lettered. A channel supplies only ``deliver``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from tidings.core.breaker import BreakerOpen
from tidings.core.bus import Bus, BusMessage, DeadLetter, as_outage, parse
from tidings.core.deliveries import DeliveryStore, Lease, LeaseLost, lease_clock
from tidings.core.errors import (
    DeliveryError,
    DependencyUnavailable,
    NoRecipient,
    ProviderAuthError,
    TransientError,
)
from tidings.core.messages import (
    Channel,
    NotificationMessage,
    RemovedDevice,
    StatusEvent,
    now_ms,
    salvage,
)
from tidings.core.metrics import DELIVERY_ERRORS, RETRIES, STAGE_SECONDS, child
from tidings.core.retry import RetryPolicy, tier_for
from tidings.core.status import Status, StatusReporter
from tidings.core.topology import CHANNEL_ROUTES, RETRY_TIERS_MS

log = logging.getLogger(__name__)

# How long a message held by a provider-auth failure waits before it tries again.
PROVIDER_AUTH_WAIT_S = 60.0
# The longest single wait of a message during an outage of the worker's own store or broker.
OUTAGE_WAIT_CAP_S = 60.0

# Render and send one notification; returns the receiving side's reply. Raises a
# DeliveryError (classified) or DependencyUnavailable (a breaker is open, a service is down:
# the message waits without spending an attempt).
Deliver = Callable[[NotificationMessage], Awaitable[str]]

# How a skipped notification's delivery record (state failed) says it was skipped.
SKIPPED = "skipped: "

# The lease of the attempt running in this task: renewed by ``renew_lease``.
_lease: ContextVar[Lease | None] = ContextVar("lease", default=None)
# The devices the message handled in this task found gone: its reports carry them.
_removed: ContextVar[dict[str, RemovedDevice] | None] = ContextVar("removed", default=None)


def devices_removed(found: dict[str, str]) -> None:
    """Called by a deliver with the devices found gone for this notification, in this attempt
    or an earlier one: each report of this message carries them (the gateway de-duplicates)."""
    if (removed := _removed.get()) is not None:
        removed.update({d: RemovedDevice(device_id=d, reason=r) for d, r in found.items()})


async def renew_lease(within_s: float | None = None) -> None:
    """Called by a sender right before it hands a message over, after any wait for a
    connection: the lease runs from now, on the database's clock. LeaseLost if another worker
    has claimed the notification meanwhile (then this attempt must not send); an outage of the
    store is DependencyUnavailable (never an OSError a sender would take for its own).

    ``within_s``, the sender's deadline for the hand-over: while the claim's lease covers it,
    nothing is written (no other worker can claim a live lease: docs/decisions.md)."""
    lease = _lease.get()
    if lease is None or (within_s is not None and lease.covers(within_s)):
        return
    try:
        await lease.renew()
    except LeaseLost:
        raise
    except Exception as exc:
        outage = as_outage(exc)
        if outage is None:
            raise
        raise outage from exc


class Unfinished(Exception):
    """Raised by a ``deliver`` that reached part of its recipients (some of a user's
    devices): ``error`` says how the rest failed and is retried or waited out as it would be
    alone; when the flow gives up on it, the notification is delivered with ``reply`` (what
    was accepted) instead of failed. The flow alone decides when that is."""

    def __init__(self, error: DeliveryError | DependencyUnavailable, reply: str) -> None:
        super().__init__(f"{reply}; the rest: {error}")
        self.error = error
        self.reply = reply


class _Unrecorded(Exception):
    """The send succeeded but its ``sent`` mark could not be written."""

    def __init__(self, reply: str, cause: Exception) -> None:
        super().__init__(f"sent, not recorded: {cause!r}")
        self.reply = reply
        self.cause = cause


class DeliveryFlow:
    """One message: claim, deliver, then exactly one of recorded sent, a retry, a wait, or
    failed and dead-lettered. An outage of the worker's own store or of the broker is a wait
    (``_outage``), a bug after the claim ends the attempt (``_crashed``), and the whole life of
    a notification is bounded by ``max_wait_s`` from its first try, whatever path it takes."""

    def __init__(
        self,
        channel: Channel,
        bus: Bus,
        deliveries: DeliveryStore,
        policy: RetryPolicy,
        deliver: Deliver,
        max_wait_s: float = 3600.0,
    ) -> None:
        self.max_wait_s = max_wait_s
        self.channel = channel
        self.route = CHANNEL_ROUTES[channel]
        self.bus = bus
        self.deliveries = deliveries
        self.policy = policy
        self.deliver = deliver
        # Concurrent messages' events go to the gateway together (one message, one ack).
        self.report = StatusReporter(bus)

    async def _report(self, n: NotificationMessage, status: Status, **fields: Any) -> None:
        event = StatusEvent(
            notification_id=n.notification_id,
            status=status,
            channel=self.channel,
            attempt=n.attempt,
            round=n.round,
            removed_devices=list((_removed.get() or {}).values()),
            **fields,
        )
        await self.report(event)

    async def _later(self, n: NotificationMessage, delay_s: float) -> None:
        await self.bus.publish(self.route, n.dumps(), message_id=n.notification_id, delay_s=delay_s)

    def _waited_s(self, n: NotificationMessage) -> float:
        return (now_ms() - (n.first_try_ms or now_ms())) / 1000

    async def __call__(self, message: BusMessage) -> None:
        n = await self._parse(message)
        if n.first_try_ms is None:
            n = n.model_copy(update={"first_try_ms": now_ms()})
        removed = _removed.set({})
        try:
            if n.sent_reply is not None:
                await self._sent(n, n.sent_reply, "sent earlier")
            else:
                await self._attempt(n)
        except DeadLetter:
            raise
        except LeaseLost as exc:
            # The worker that took the lease over holds a copy of its own: this one is done.
            log.warning("notification %s not sent here: %s", n.notification_id, exc.message)
        except _Unrecorded as exc:
            unrecorded = as_outage(exc.cause) or DependencyUnavailable(repr(exc.cause))
            await self._outage(n.model_copy(update={"sent_reply": exc.reply}), unrecorded)
        except Exception as exc:
            outage = as_outage(exc)
            if outage is None:
                raise  # a bug before the claim: the bus requeues; the delivery limit applies
            await self._outage(n, outage)
        finally:
            _removed.reset(removed)

    async def _parse(self, message: BusMessage) -> NotificationMessage:
        """The message; one that does not parse is dead-lettered, and reported failed with
        the reason when its notification id can still be read."""
        try:
            return parse(NotificationMessage, message)
        except DeadLetter as dead:
            found = salvage(message.body)
            if found is not None:
                event = StatusEvent(
                    status=Status.FAILED, channel=self.channel, error=dead.reason, **found
                )
                await self.report(event)
            raise

    async def _attempt(self, n: NotificationMessage) -> None:
        asked_at = lease_clock()
        claim = await self.deliveries.claim(n.notification_id, n.round)
        if claim.result == "sent":
            # A redelivery or a duplicate: never send again; repeat the report, which may
            # be what was lost.
            await self._report(
                n, Status.DELIVERED, detail=f"duplicate message suppressed: {claim.reply}"
            )
            return
        if claim.result == "failed":
            # The same for a failure: its report, or its dead letter, may be what was lost
            # (the gateway stores a dead letter once however often it comes).
            reason = claim.reply or "failed earlier"
            if reason.startswith(SKIPPED):  # skipped, not failed: no dead letter
                await self._report(n, Status.SKIPPED, detail=reason.removeprefix(SKIPPED)[:500])
                return
            log.info("duplicate of failed notification %s: reported again", n.notification_id)
            await self._report(n, Status.FAILED, error=reason, detail="duplicate message: failed")
            raise DeadLetter(reason, headers={"x-tidings-attempts": n.attempt})
        if claim.result == "busy":
            if self._waited_s(n) > self.max_wait_s:
                await self._fail(
                    n, f"still held by another worker after {self.max_wait_s:g}s; dropped"
                )
            await self._later(n, claim.wait_s + 1)
            return
        started = time.perf_counter()
        token = _lease.set(Lease(self.deliveries, n.notification_id, claim.attempts, asked_at))
        try:
            # Shielded: losing the broker connection cancels its handlers, and an SMTP
            # dialogue cut after the server took the message would mean a duplicate later.
            reply = await asyncio.shield(self._send(n))
        except (_Unrecorded, LeaseLost):
            raise
        except Exception as exc:
            await self._not_sent(n, exc)
            return
        finally:
            _lease.reset(token)
        log.info(
            "notification %s sent",
            n.notification_id,
            extra={
                "notification_id": n.notification_id,
                "request_id": n.request_id,
                "channel": self.channel,
                "attempt": n.attempt,
                "duration_ms": round((time.perf_counter() - started) * 1e3, 2),
            },
        )
        await self._sent(n, reply, "accepted", recorded=True)

    async def _not_sent(self, n: NotificationMessage, exc: Exception) -> None:
        """The attempt did not end in a send: classify ``exc`` once, for every channel."""
        partly: str | None = None
        if isinstance(exc, Unfinished):
            partly, exc = exc.reply, exc.error
        if isinstance(exc, DependencyUnavailable):
            await self._wait(n, exc, partly=partly)
        elif isinstance(exc, ProviderAuthError):
            # Alert and hold: our credentials are wrong, not the message; it waits (without
            # spending attempts) for someone to fix them, up to max_wait_s.
            log.error(
                "ALERT provider refused our credentials: %s", exc.message, extra={"alert": True}
            )
            held = DependencyUnavailable(f"provider-auth: {exc.message}")
            await self._wait(n, held, PROVIDER_AUTH_WAIT_S, partly=partly)
        elif isinstance(exc, TransientError):
            child(DELIVERY_ERRORS, self.channel, exc.kind).inc()
            await self._retry_or_fail(n, exc.kind, exc.message, exc.retry_after_s, partly)
        elif isinstance(exc, NoRecipient):
            await self._skip(n, exc.message)
        elif isinstance(exc, DeliveryError):
            child(DELIVERY_ERRORS, self.channel, exc.kind).inc()
            dead_address = n.recipient.email if self.channel == "email" else None
            await self._fail(
                n,
                f"{exc.kind}: {exc.message}",
                suppress=dead_address if exc.kind == "recipient_invalid" else None,
            )
        elif (outage := as_outage(exc)) is not None:
            await self._wait(n, outage)
        else:
            await self._crashed(n, exc)

    async def _give_up(self, n: NotificationMessage, reason: str, partly: str | None) -> None:
        """The end of retrying: delivered with ``partly`` when part of it was (an
        Unfinished), else failed and dead-lettered (DeadLetter raised)."""
        if partly is not None:
            log.info("notification %s: %s; delivered in part", n.notification_id, reason)
            await self._sent(n, partly, "accepted")
            return
        await self._fail(n, reason)

    async def _send(self, n: NotificationMessage) -> str:
        reply = await self.deliver(n)
        try:
            await self.deliveries.mark_sent(n.notification_id, reply)
        except Exception as exc:
            raise _Unrecorded(reply, exc) from exc
        return reply

    async def _sent(
        self, n: NotificationMessage, reply: str, how: str, recorded: bool = False
    ) -> None:
        if not recorded:
            await self.deliveries.mark_sent(n.notification_id, reply)
        child(STAGE_SECONDS, self.channel, "sent").observe(
            max(0.0, (now_ms() - n.created_at_ms) / 1000)
        )
        await self._report(n, Status.DELIVERED, detail=f"{how}: {reply}"[:500])

    async def _outage(self, n: NotificationMessage, exc: DependencyUnavailable) -> None:
        """Our own store or the broker is down: the message comes back later, as a new
        message (no attempt spent, no delivery counted), the wait growing with the time
        waited so far; past ``max_wait_s`` the notification fails (never one already sent)."""
        waited_s = self._waited_s(n)
        if waited_s > self.max_wait_s:
            reason = f"unavailable for {waited_s:.0f}s: {exc.message}"
            if n.sent_reply is not None:
                # Sent and still not recorded: the gateway hears it was delivered.
                await self._report(
                    n, Status.DELIVERED, detail=f"sent (not recorded): {n.sent_reply}"
                )
                return
            await self._report(n, Status.FAILED, error=reason)
            raise DeadLetter(reason, headers={"x-tidings-attempts": n.attempt})
        delay_s = min(OUTAGE_WAIT_CAP_S, max(self.policy.base_s, waited_s / 4))
        log.warning("notification %s waits %.0fs: %s", n.notification_id, delay_s, exc.message)
        # In the history, and a sign of life for the gateway's reconciler. If the broker is
        # what is down, the wait below fails too, and says so.
        with contextlib.suppress(DependencyUnavailable):
            await self._report(n, Status.PENDING, detail=f"waiting {delay_s:.0f}s: {exc.message}")
        await self._later(n, delay_s)

    async def _wait(
        self,
        n: NotificationMessage,
        exc: DependencyUnavailable,
        wait_s: float | None = None,
        *,
        partly: str | None = None,
    ) -> None:
        """A breaker is open or a dependency is down: try again later without spending an
        attempt, until the notification has waited ``max_wait_s`` in all."""
        if self._waited_s(n) > self.max_wait_s:
            reason = f"transient: still unavailable after {self.max_wait_s:g}s: {exc.message}"
            await self._give_up(n, reason, partly)
            return
        await self.deliveries.release(n.notification_id, exc.message)
        if wait_s is None:
            wait_s = exc.retry_after_s if isinstance(exc, BreakerOpen) else self.policy.base_s
        await self._report(
            n, Status.PENDING, detail=f"waiting {tier_for(wait_s) / 1000:g}s: {exc.message}"
        )
        await self._later(n, wait_s)

    async def _crashed(self, n: NotificationMessage, exc: Exception) -> None:
        """An exception nobody classified, after the claim: the attempt ends like a transient
        failure (released, counted, backoff), so a message that always raises fails after
        ``max_attempts`` with the exception as its reason, instead of coming back forever."""
        log.exception("attempt %d of %s raised", n.attempt, n.notification_id)
        child(DELIVERY_ERRORS, self.channel, "error").inc()
        await self._retry_or_fail(n, "error", f"{exc.__class__.__name__}: {exc}"[:1000])

    async def _retry_or_fail(
        self,
        n: NotificationMessage,
        kind: str,
        message: str,
        retry_after_s: float | None = None,
        partly: str | None = None,
    ) -> None:
        error = f"attempt {n.attempt}: {kind}: {message}"
        if not self.policy.should_retry(n.attempt) or self._waited_s(n) > self.max_wait_s:
            await self._give_up(
                n.model_copy(update={"errors": [*n.errors, error]}),
                f"{kind}: gave up after {n.attempt} attempts; last error: {message}",
                partly,
            )
            return
        await self.deliveries.release(n.notification_id, error)
        child(RETRIES, self.channel).inc()
        delay_s = self.policy.backoff_s(n.attempt)
        if retry_after_s:
            # Delays round down to a tier; the peer's Retry-After must round up instead.
            floor_s = next((t for t in RETRY_TIERS_MS if t >= retry_after_s * 1000), None)
            delay_s = max(delay_s, (floor_s or RETRY_TIERS_MS[-1]) / 1000)
        await self._report(
            n, Status.PENDING, error=error, detail=f"retry in {tier_for(delay_s) / 1000:g}s"
        )
        await self._later(
            n.model_copy(update={"attempt": n.attempt + 1, "errors": [*n.errors, error]}), delay_s
        )

    async def _skip(self, n: NotificationMessage, reason: str) -> None:
        """Nothing to deliver to: final (a duplicate message is dropped), reported
        ``skipped`` with the reason, acknowledged, never dead-lettered."""
        await self.deliveries.mark_failed(n.notification_id, f"{SKIPPED}{reason}")
        await self._report(n, Status.SKIPPED, detail=reason[:500])

    async def _fail(self, n: NotificationMessage, reason: str, suppress: str | None = None) -> None:
        """Final: record it, report it, and raise the DeadLetter that sends it to failed.queue."""
        await self.deliveries.mark_failed(n.notification_id, reason)
        await self._report(n, Status.FAILED, error=reason, suppress=suppress)
        raise DeadLetter(
            reason,
            headers={"x-tidings-attempts": n.attempt, "x-tidings-errors": n.errors[-20:]},
        )
