"""The circuit breaker, on a clock the test moves."""

from __future__ import annotations

import pytest

from tidings.core.breaker import BreakerOpen, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Refused(Exception):
    pass


class Rejected(Exception):
    pass


def counts(exc: BaseException) -> bool:
    return isinstance(exc, Refused)


async def call(breaker: CircuitBreaker, exc: Exception | None = None) -> None:
    async with breaker.guard(counts):
        if exc is not None:
            raise exc


async def test_opens_after_threshold_half_opens_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker("smtp", failure_threshold=3, reset_timeout_s=60, clock=clock)
    for _ in range(2):
        with pytest.raises(Refused):
            await call(breaker, Refused())
    assert breaker.state == "closed"
    with pytest.raises(Refused):
        await call(breaker, Refused())
    assert breaker.state == "open"
    with pytest.raises(BreakerOpen) as refused:
        await call(breaker)
    assert refused.value.retry_after_s == pytest.approx(60)
    assert await breaker.health() is not None

    clock.now += 60
    assert breaker.state == "half_open"
    breaker.before_call()  # the probe
    with pytest.raises(BreakerOpen):
        breaker.before_call()  # a second caller waits for the probe's verdict
    breaker.record_success()
    assert breaker.state == "closed" and await breaker.health() is None


async def test_a_failed_probe_reopens_for_a_full_timeout() -> None:
    clock = Clock()
    breaker = CircuitBreaker("templates", failure_threshold=1, reset_timeout_s=30, clock=clock)
    with pytest.raises(Refused):
        await call(breaker, Refused())
    clock.now += 30
    with pytest.raises(Refused):
        await call(breaker, Refused())
    assert breaker.state == "open" and breaker.retry_after_s() == pytest.approx(30)


async def test_failures_that_do_not_count_never_open_it() -> None:
    """A per-message rejection (an SMTP 451, say) proves the server answers."""
    breaker = CircuitBreaker("smtp", failure_threshold=2, reset_timeout_s=60, clock=Clock())
    for _ in range(10):
        with pytest.raises(Rejected):
            await call(breaker, Rejected())
    assert breaker.state == "closed"
    with pytest.raises(Refused):
        await call(breaker, Refused())
    with pytest.raises(Rejected):
        await call(breaker, Rejected())  # resets the count of consecutive failures
    with pytest.raises(Refused):
        await call(breaker, Refused())
    assert breaker.state == "closed"


def test_a_probe_whose_outcome_never_comes_stops_blocking_after_a_reset_time() -> None:
    """A caller that took the probe and recorded nothing (the database pool's breaker hears
    outcomes from statements, and a checkout may run none) must not hold it open for good."""
    clock = Clock()
    breaker = CircuitBreaker("db", failure_threshold=1, reset_timeout_s=1, clock=clock)
    breaker.record_failure()
    clock.now += 1
    breaker.before_call()  # the probe, never heard of again
    with pytest.raises(BreakerOpen):
        breaker.before_call()
    clock.now += 1
    breaker.before_call()  # another probe may go
    breaker.record_success()
    assert breaker.state == "closed"
