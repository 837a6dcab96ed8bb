"""Background tasks a service runs while it is up (the relay, the reconciler, a discovery
heartbeat, the gateway's queue watcher): each is started with ``asyncio.create_task`` and
stopped with :func:`cancel_and_wait`, so nothing is left running when the service stops.
A loop that does the same work every so often is a :class:`Periodic`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tidings.core.bus import as_outage

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (None: never started) and wait until it has stopped; its
    cancellation is the expected end, any other exception it ended with is raised."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Periodic:
    """``work`` run every ``every_s`` in a task of its own, from :meth:`start` until
    :meth:`stop` (which cancels it, mid-wait or mid-run, and waits for it): the one
    background loop of the services (a purge, a sample, a sweep, a heartbeat).

    ``first_wait``: wait ``every_s`` before the first run (the work was just done while
    starting, or need not be done at once). The wait runs after each run ends, so a slow run
    never stacks the next one on it. A run that fails does not end the loop: an outage (a
    database, the broker, Redis: core.bus.as_outage) is logged once, as a warning, until a
    run succeeds again; anything else (a bug) is logged with its traceback every time."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[Any]],
        every_s: float,
        *,
        first_wait: bool = False,
    ) -> None:
        if every_s <= 0:
            raise ValueError(f"{name}: every_s must be > 0 (got {every_s!r}): no busy loop")
        self.name = name
        self.work = work
        self.every_s = every_s
        self.first_wait = first_wait
        self._task: asyncio.Task[None] | None = None
        self._waiting_out: bool = False  # an outage was logged and has not ended yet
        # Set while the loop waits between runs (or before its first), clear while it runs:
        # what a test or a shutdown waits on to know where the loop is, without a sleep.
        self.idle = asyncio.Event()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        if self.first_wait:
            await self._wait()
        while True:
            self.idle.clear()
            await self.run_once()
            await self._wait()

    async def _wait(self) -> None:
        self.idle.set()
        await asyncio.sleep(self.every_s)

    async def run_once(self) -> None:
        """One run of ``work``, its failure logged (the class docstring), never raised."""
        try:
            await self.work()
        except Exception as exc:
            outage = as_outage(exc)
            if outage is None:
                log.exception("%s failed; again in %gs", self.name, self.every_s)
            elif not self._waiting_out:
                self._waiting_out = True
                log.warning("%s waits (again every %gs): %s", self.name, self.every_s, outage)
            return
        if self._waiting_out:
            self._waiting_out = False
            log.info("%s works again", self.name)
