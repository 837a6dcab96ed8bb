"""A batch of work messages dead-lettered whole (after its delivery limit, or by an older
worker that cannot read one) is stored by the gateway as a dead letter per notification, each
notification failed with the reason, none left waiting (gateway.app: the failed.queue
consumer takes batches apart, core.bus.unbatched)."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, select

from tests.gateway.test_status_batches import dead_letter, history, scheduled
from tests.helpers import wait_for_condition
from tests.system import System
from tidings.core.bus import batch_message
from tidings.core.bus.rabbit import RabbitBus
from tidings.core.topology import FAILED_ROUTE, REASON_HEADER, SOURCE_QUEUE_HEADER
from tidings.gateway.models import OutboxMessage


async def test_a_batch_dead_lettered_whole_is_a_dead_letter_per_notification(
    system: System, amqp_vhost: str
) -> None:
    gw = system.gateway
    ids = await scheduled(gw, 3)  # held a day in the outbox: only the dead letter moves them
    outbox = cast(Table, OutboxMessage.__table__)
    db = system.apps["gateway"].state.gateway.db
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(outbox.c.notification_id, outbox.c.payload, outbox.c.correlation_id)
            )
        ).all()
    payloads = {str(r.notification_id): (r.payload, r.correlation_id) for r in rows}
    body, headers = batch_message([payloads[i][0] for i in ids], ids, [payloads[i][1] for i in ids])
    headers |= {REASON_HEADER: "delivery limit reached", SOURCE_QUEUE_HEADER: "email.queue"}
    bus = RabbitBus(amqp_vhost)
    await bus.start()
    try:
        await bus.publish(FAILED_ROUTE, body, message_id=ids[0], headers=headers)
    finally:
        await bus.close()
    for nid in ids:
        stored = await dead_letter(gw, nid)  # exactly one each
        assert stored["reason"] == "delivery limit reached", stored
        assert stored["source_queue"] == "email.queue", stored

        async def failed(nid: str = nid) -> bool:
            return (await history(gw, nid))["status"] == "failed"

        await wait_for_condition(failed, timeout_s=30, what=f"{nid} failed")
