"""The circuit breaker, on a clock the test moves."""

from __future__ import annotations

import asyncio
import struct

import pytest

from tidings.core.breaker import BreakerOpen, CircuitBreaker
from tidings.core.db import DbTimeouts, open_database, unavailable


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


async def _starting_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A PostgreSQL peer that refuses every connection the way a server starting up does:
    SQLSTATE 57P03 in answer to the startup message (no SSL on offer)."""
    try:
        while True:
            (length,) = struct.unpack("!I", await reader.readexactly(4))
            body = await reader.readexactly(length - 4)
            if length == 8 and struct.unpack("!I", body)[0] == SSL_REQUEST:
                writer.write(b"N")
                continue
            fields = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
            writer.write(b"E" + struct.pack("!I", len(fields) + 4) + fields)
            await writer.drain()
            return
    finally:
        writer.close()


SSL_REQUEST = 80877103


async def test_a_refused_database_connect_counts_once() -> None:
    """The database's breaker counts a failed connect once: the pool records it, and the
    engine's error hook, which sees the same failure (without a connection), does not again.
    With a threshold of 2 the second refused connect still reaches the server."""
    server = await asyncio.start_server(_starting_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    timeouts = DbTimeouts(
        connect_s=1.0, statement_s=1.0, pool_s=1.0, breaker_failures=2, breaker_reset_s=60.0
    )
    db = open_database(f"postgresql+asyncpg://u:p@127.0.0.1:{port}/none", "nobody", timeouts)
    try:
        for _ in range(2):
            with pytest.raises(Exception) as refused:
                await db.ping()
            assert not isinstance(refused.value, BreakerOpen)
            assert "starting up" in str(unavailable(refused.value))
        with pytest.raises(BreakerOpen):  # the second one opened it
            await db.ping()
    finally:
        await db.close()
        server.close()
        await server.wait_closed()
