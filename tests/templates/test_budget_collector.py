"""A render's CPU budget (core.sandbox.Budget) counts the render's own CPU time, not the
garbage collector's: a full collection over a big heap may run in the middle of any render
(in CI one took a 60 µs template over the 0.5 s budget, a permanent failure)."""

from __future__ import annotations

import gc
import time

from tidings.core.sandbox import Budget


def test_a_collection_during_a_render_is_not_charged_to_it() -> None:
    heap = [[i] for i in range(300_000)]  # a heap a full collection takes a while to walk
    for i in range(0, len(heap) - 1, 2):  # cycles, so that the collection has work
        heap[i].append(heap[i + 1])
        heap[i + 1].append(heap[i])
    budget = Budget(cpu_s=0.002)
    started = time.thread_time()
    gc.collect()
    assert time.thread_time() - started > 0.002, "the collection was too quick to show it"
    budget.spend(1)  # would raise OverBudget if the collection were charged
    del heap


def test_the_render_s_own_cpu_is_still_charged() -> None:
    budget = Budget(cpu_s=0.002)
    end = time.thread_time() + 0.01
    while time.thread_time() < end:
        pass
    try:
        budget.spend(1)
    except Exception as exc:  # OverBudget
        assert "CPU time" in str(exc)
    else:
        raise AssertionError("a render's own CPU past the budget was not stopped")
