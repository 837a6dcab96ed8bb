"""The suppression look-ups of concurrent requests share one statement (core.batching), and
each answers for its own address, in any case of letters."""

from __future__ import annotations

import asyncio
import uuid

from tests.system import System


async def test_concurrent_look_ups_share_a_statement_and_answer_each_their_own(
    system: System,
) -> None:
    suppressions = system.apps["gateway"].state.gateway.suppressions
    marked = [f"x-{uuid.uuid4().hex[:8]}@example.com" for _ in range(3)]
    for address in marked:
        await suppressions.add(address, "bounced", "test")
    clean = [f"y-{uuid.uuid4().hex[:8]}@example.com" for _ in range(30)]
    before = suppressions._lookups.batches
    answers = await asyncio.gather(
        *(suppressions.reason_for(a) for a in [m.upper() for m in marked] + clean)
    )
    assert answers[:3] == ["test: bounced"] * 3
    assert answers[3:] == [None] * 30
    # The first goes at once; the others, arrived meanwhile, together.
    assert suppressions._lookups.batches - before <= 2
