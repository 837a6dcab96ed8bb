"""How a worker tells the gateway what happened: a status event on status.queue."""

from __future__ import annotations

from tidings.core.bus import Bus
from tidings.core.messages import StatusEvent
from tidings.core.topology import STATUS_ROUTE


async def report(bus: Bus, event: StatusEvent) -> None:
    await bus.publish(
        STATUS_ROUTE,
        event.dumps(),
        message_id=f"{event.notification_id}:{event.status}:{event.attempt}",
    )
