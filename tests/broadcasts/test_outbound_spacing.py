"""Sends whose booked turns passed while the process could not run (a busy event loop) are
not let go at once: each process spaces the sends it starts as well (core.outbound). Without
that, the 1,000-at-14/s test's server saw arrivals in a bunch after a stall and refused two."""

from __future__ import annotations

import asyncio
import itertools
import time

from tests.helpers import wait_for_condition
from tidings.core.outbound import Outbound

RATE = 20.0
SENDS = 6


async def test_sends_woken_together_after_a_stall_start_spaced(
    redis_url: str, cache_namespace: str
) -> None:
    outbound = Outbound(redis_url, cache_namespace, queue_s=5.0, burst=1)
    started: list[float] = []
    booked = 0
    book = outbound.book

    async def counted(key: str, rate_per_s: float, horizon_s: float) -> float:
        nonlocal booked
        answer = await book(key, rate_per_s, horizon_s)
        booked += 1
        return answer

    outbound.book = counted  # type: ignore[method-assign]

    async def send() -> None:
        await outbound.turn("smtp:test", RATE)
        started.append(time.monotonic())

    try:
        sends = [asyncio.create_task(send()) for _ in range(SENDS)]

        # Until every send has booked its turn (1/RATE apart), then the event loop held for
        # longer than all of them: every turn has passed when the loop runs again.
        async def all_booked() -> bool:
            return booked == SENDS

        await wait_for_condition(all_booked, timeout_s=10, interval_s=0.001, what="every turn")
        time.sleep(SENDS / RATE)  # noqa: ASYNC251 - the stall under test, on purpose
        await asyncio.wait_for(asyncio.gather(*sends), 10)
    finally:
        await outbound.close()
    gaps = [b - a for a, b in itertools.pairwise(started)]
    print("gaps after the stall (ms):", [round(g * 1000) for g in gaps])
    assert len(started) == SENDS
    assert min(gaps) >= 0.9 / RATE, gaps
