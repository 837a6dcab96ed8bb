"""core.batching: group commit. Concurrent callers share a batch; each gets its own result
or its own error; a failed batch fails only its callers; nothing waits for a timer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tidings.core.batching import Batcher


class Recorder:
    """A batch function that holds each batch until released, and records them."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.fail_next: BaseException | None = None

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.entered.set()
        await self.release.wait()
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


def entering(batcher: Batcher[int, int], count: int) -> tuple[Any, asyncio.Event]:
    """``submit`` as a task, and an event set once ``count`` submits have queued their item
    (an item is queued before ``submit`` first yields)."""
    entered = asyncio.Event()
    seen = [0]

    def submit(item: int) -> asyncio.Task[int]:
        async def run() -> int:
            seen[0] += 1
            if seen[0] == count:
                entered.set()
            return await batcher.submit(item)

        return asyncio.create_task(run())

    return submit, entered


async def test_a_lone_item_goes_at_once() -> None:
    rec = Recorder()
    rec.release.set()
    batcher = Batcher(rec)
    assert await asyncio.wait_for(batcher.submit(2), 5) == 20
    assert rec.batches == [[2]]


async def test_items_arriving_during_a_batch_go_together_in_the_next() -> None:
    rec = Recorder()
    batcher = Batcher(rec, max_batch=3)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.wait_for(rec.entered.wait(), 5)
    submit, queued = entering(batcher, 4)
    later = [submit(i) for i in (2, 4, 6, 8)]
    await asyncio.wait_for(queued.wait(), 5)  # queued behind the running batch
    rec.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *later), 5)
    assert results == [0, 20, 40, 60, 80]
    # The first alone, then the waiting ones, at most max_batch at a time, in order.
    assert rec.batches == [[0], [2, 4, 6], [8]]
    assert batcher.batches == 3


async def test_each_caller_gets_its_own_error() -> None:
    rec = Recorder()
    rec.release.set()
    batcher = Batcher(rec)
    ok, odd = await asyncio.wait_for(
        asyncio.gather(batcher.submit(4), batcher.submit(3), return_exceptions=True), 5
    )
    assert ok == 40
    assert isinstance(odd, ValueError) and str(odd) == "odd 3"


async def test_a_failed_batch_fails_its_callers_only_and_the_next_batch_runs() -> None:
    rec = Recorder()
    batcher = Batcher(rec)
    rec.fail_next = ConnectionError("database down")
    first = asyncio.create_task(batcher.submit(2))
    await asyncio.wait_for(rec.entered.wait(), 5)
    submit, queued = entering(batcher, 1)
    second = submit(4)
    await asyncio.wait_for(queued.wait(), 5)
    rec.release.set()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(first, 5)
    assert await asyncio.wait_for(second, 5) == 40


async def test_a_wrong_number_of_results_is_an_error_for_every_caller() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    batcher: Batcher[int, int] = Batcher(short)
    results = await asyncio.wait_for(
        asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True), 5
    )
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_cancelled_caller_leaves_its_item_in_the_batch() -> None:
    rec = Recorder()
    batcher = Batcher(rec)
    waiting = asyncio.create_task(batcher.submit(6))
    await asyncio.wait_for(rec.entered.wait(), 5)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    rec.release.set()
    assert await asyncio.wait_for(batcher.submit(8), 5) == 80
    assert rec.batches == [[6], [8]]
