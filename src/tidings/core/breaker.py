"""Circuit breakers, one per remote dependency (SMTP, the templates and users services).

Written here rather than taken from pybreaker or aiobreaker because Tidings needs semantics
they do not offer together: asyncio-native; a caller-supplied rule for which failures count
(connection-level ones, never a per-message 4xx); an open breaker that tells the caller how
long to wait (so a worker delays the message instead of failing it); and a state /health can
show.

closed --N consecutive counted failures--> open --reset_timeout_s--> half_open
half_open: one probe call goes through; success closes, a counted failure re-opens.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from tidings.core.errors import DependencyUnavailable, RetryAfter

State = Literal["closed", "open", "half_open"]


class BreakerOpen(RetryAfter, DependencyUnavailable):
    """The breaker refuses the call; try again after ``retry_after_s``."""

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(f"{name} circuit breaker is open; retry in {retry_after_s:.1f}s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens (``failures`` counted failures in a row) and how long it stays
    open before a probe (``reset_s``)."""

    failures: int
    reset_s: float

    def breaker(self, name: str) -> CircuitBreaker:
        return CircuitBreaker(name, failure_threshold=self.failures, reset_timeout_s=self.reset_s)


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        reset_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False
        self.probe_started = 0.0

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.reset_timeout_s:
            return "half_open"
        return "open"

    def retry_after_s(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.reset_timeout_s - (self.clock() - self.opened_at))

    def before_call(self) -> None:
        state = self.state
        if state == "open":
            raise BreakerOpen(self.name, self.retry_after_s())
        if state == "half_open":
            # One probe at a time; the others wait for its outcome. A probe whose outcome
            # never came (a caller that recorded nothing) stops counting after a reset time.
            now = self.clock()
            if self.probing and now - self.probe_started < self.reset_timeout_s:
                raise BreakerOpen(self.name, min(1.0, self.reset_timeout_s))
            self.probing = True
            self.probe_started = now

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def record_failure(self) -> None:
        self.probing = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()

    @asynccontextmanager
    async def guard(self, counts: Callable[[BaseException], bool]) -> AsyncIterator[None]:
        """Run the block through the breaker; an exception for which ``counts`` is true is a
        failure, any other outcome proves the dependency answers (a success)."""
        self.before_call()
        try:
            yield
        except BaseException as exc:
            if counts(exc):
                self.record_failure()
            elif isinstance(exc, Exception):
                self.record_success()
            else:  # cancelled: no verdict; let another call probe
                self.probing = False
            raise
        self.record_success()

    async def health(self) -> str | None:
        """None (healthy) while closed; otherwise a line for /health."""
        state = self.state
        if state == "closed":
            return None
        return f"{self.name} breaker {state}; retry in {self.retry_after_s():.1f}s"
