"""How much an endpoint may hold claimed (webhooks.worker.WebhookWorker.prefetch_of): the
deadline's worth until it has answered, then as many as its slots can send within the lease
at the pace of its slowest recent request, the process's bound less the deadline's worth at
most; so that a fast
receiver's messages are claimed by the fan-out that writes them (no claim statement)."""

from __future__ import annotations

import uuid
from collections import deque
from typing import cast

from tidings.core.db import Database
from tidings.webhooks.sender import Sender
from tidings.webhooks.settings import WebhooksSettings
from tidings.webhooks.store import WebhookStore
from tidings.webhooks.worker import PACE_WINDOW, WebhookWorker


def test_a_fast_endpoint_holds_a_batch_and_a_slow_one_its_deadline_s_worth() -> None:
    settings = WebhooksSettings(
        webhook_lease_s=60, webhook_timeout_s=10, webhook_endpoint_concurrency=8
    )
    worker = WebhookWorker(WebhookStore(cast(Database, None)), cast(Sender, None), settings)
    unknown, fast, slowing = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    # 8 slots, (60 // 10 - 1) requests each, until an endpoint has answered.
    assert worker.prefetch == 40 and worker.prefetch_of(unknown) == 40
    worker.pace[fast] = deque([0.004] * PACE_WINDOW, maxlen=PACE_WINDOW)
    # At most the process's bound (64 slots x 5, two fan-out batches at least: 400) less
    # the deadline's worth (40), room left for another endpoint.
    assert worker.prefetch_all == 400 and worker.prefetch_of(fast) == 360
    # One slow answer among its latest: back to what the lease allows at that pace.
    worker.pace[slowing] = deque([0.004, 2.0, 0.004], maxlen=PACE_WINDOW)
    assert worker.prefetch_of(slowing) == 8 * int(49 // 2.0) == 192
    worker.pace[slowing].append(9.5)
    assert worker.prefetch_of(slowing) == 40
    # The room is what it may hold less what it holds; an open breaker holds it at none.
    worker.held[fast] = 150
    assert worker._room()[fast] == 360 - 150
    breaker = worker.breaker(fast)
    for _ in range(settings.webhook_breaker_failures):
        breaker.record_failure()
    assert breaker.state == "open"
    assert worker._room()[fast] == 0
