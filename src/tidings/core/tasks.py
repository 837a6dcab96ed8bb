"""Background tasks a service runs while it is up (the relay, the reconciler, a discovery
heartbeat, the gateway's queue watcher): each is started with ``asyncio.create_task`` and
stopped with :func:`cancel_and_wait`, so nothing is left running when the service stops."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (None: never started) and wait until it has stopped; its
    cancellation is the expected end, any other exception it ended with is raised."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
