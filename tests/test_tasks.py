"""core.tasks.Periodic, the one background loop of the services (the sent copies' purge,
the dashboard's sampler, the reconciler, the discovery heartbeat): it runs again after a
failure, logs an outage once until it ends and a bug every time, waits first when told to,
and stops at once, in a wait or in a run."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tidings.core.errors import DependencyUnavailable
from tidings.core.tasks import Periodic


async def test_a_failing_run_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Runs: a bug, an outage, the same outage, a success, then nothing more to see.
    outcomes: list[BaseException | None] = [
        ValueError("a bug"),
        DependencyUnavailable("the store is away"),
        DependencyUnavailable("the store is away"),
        None,
    ]
    runs = 0
    done = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs >= len(outcomes):
            done.set()
        outcome = outcomes[min(runs, len(outcomes)) - 1]
        if outcome is not None:
            raise outcome

    loop = Periodic("test-loop", work, 0.01)
    with caplog.at_level(logging.INFO, logger="tidings.core.tasks"):
        loop.start()
        await asyncio.wait_for(done.wait(), 10)
        await loop.stop()
    records = [r for r in caplog.records if r.name == "tidings.core.tasks"]
    bugs = [r for r in records if r.levelno == logging.ERROR]
    waits = [r for r in records if r.levelno == logging.WARNING]
    back = [r for r in records if r.levelno == logging.INFO]
    assert len(bugs) == 1 and bugs[0].exc_info is not None, "a bug: with its traceback"
    assert len(waits) == 1 and "the store is away" in waits[0].getMessage(), "once"
    assert len(back) == 1 and "works again" in back[0].getMessage()


async def test_first_wait_and_a_prompt_stop() -> None:
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1

    waiting = Periodic("waits-first", work, 3600, first_wait=True)
    waiting.start()
    await asyncio.wait_for(waiting.idle.wait(), 5)  # in its first wait, not in a run
    await asyncio.wait_for(waiting.stop(), 5)  # an hour's wait does not hold the stop
    assert runs == 0

    started, never = asyncio.Event(), asyncio.Event()

    async def stuck() -> None:
        started.set()
        await never.wait()

    busy = Periodic("stuck", stuck, 3600)
    busy.start()
    await asyncio.wait_for(started.wait(), 5)  # no first wait: it runs at once
    assert not busy.idle.is_set()  # running, not waiting
    await asyncio.wait_for(busy.stop(), 5)  # nor does a run that never ends


def test_no_busy_loop() -> None:
    async def work() -> None:
        return None

    with pytest.raises(ValueError, match="busy loop"):
        Periodic("busy", work, 0)
