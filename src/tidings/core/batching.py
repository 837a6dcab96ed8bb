"""Group commit: concurrent callers' items handled together, by one call of a batch function.

A caller submits one item and awaits its own result. While a batch is being written, the
items that arrive wait and go together in the next one: under load, one transaction (and one
WAL flush) serves many requests; alone, an item goes at once, with no timer to wait for.
This is how the gateway writes accepted notifications and records status events
(docs/performance.md has the before and after).

Nothing in the libraries we use does this for asyncio (aiodataloader batches per loop tick
and for reads only), and it is short: written here, once, for every service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Handles a batch; returns one result per item, in order: a value, or the exception that
# item's caller is to see (the others still get theirs).
BatchFunction = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[T, R]):
    def __init__(self, handle: BatchFunction[T, R], *, max_batch: int = 500) -> None:
        self.handle = handle
        self.max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.batches = 0  # how many batches were handled (for tests and metrics)

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="batcher")
        # A caller that gives up (a cancelled request) leaves its item in the batch: what
        # was submitted is written either way, as it would be by a lone caller's commit.
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_retrieve)
            raise

    async def _run(self) -> None:
        while self._waiting:
            batch, self._waiting = (
                self._waiting[: self.max_batch],
                self._waiting[self.max_batch :],
            )
            items = [item for item, _ in batch]
            try:
                results = await self.handle(items)
                if len(results) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} answered {len(results)} results")
            except BaseException as exc:  # every caller of the batch sees the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            finally:
                self.batches += 1
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark the outcome seen: nobody is left to await it."""
    if not future.cancelled():
        future.exception()
