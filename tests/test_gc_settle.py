"""A service's process, once it listens, freezes what it made while starting and collects its
youngest generation less often (runner.settle_heap); 0 leaves Python's collector alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tidings.core.settings import TidingsSettings
from tidings.runner import settle_heap


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector")
def test_a_listening_process_freezes_its_start_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    _, older, oldest = gc.get_threshold()
    made_while_starting = [{"n": i} for i in range(1000)]
    settle_heap(TidingsSettings(gc_young_threshold=50_000))
    assert gc.get_threshold() == (50_000, older, oldest)
    assert gc.get_freeze_count() >= len(made_while_starting)


@pytest.mark.usefixtures("collector")
def test_zero_leaves_the_collector_as_python_has_it() -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    settle_heap(TidingsSettings(gc_young_threshold=0))
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
