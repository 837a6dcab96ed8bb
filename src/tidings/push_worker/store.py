"""Per-device results of each notification, in the push worker's own store."""

from __future__ import annotations

from sqlalchemy import select

from tidings.core.db import Database, utcnow
from tidings.push_worker.models import DeviceResult

# A device in one of these states is not sent the notification again.
FINAL_STATES = ("accepted", "dead", "failed")


class DeviceResults:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def finished(self, notification_id: str) -> dict[str, DeviceResult]:
        """The devices already done with this notification, by device id."""
        async with self.db.sessions() as session:
            rows = await session.scalars(
                select(DeviceResult).where(
                    DeviceResult.notification_id == notification_id,
                    DeviceResult.state.in_(FINAL_STATES),
                )
            )
            return {r.device_id: r for r in rows}

    async def record(
        self, notification_id: str, device_id: str, kind: str, state: str, detail: str
    ) -> None:
        table = DeviceResult.__table__
        values = {"kind": kind, "state": state, "detail": detail[:2000], "updated_at": utcnow()}
        stmt = self.db.insert(table).values(
            notification_id=notification_id, device_id=device_id, **values
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.notification_id, table.c.device_id], set_=values
        )
        async with self.db.sessions() as session, session.begin():
            await session.execute(stmt)
