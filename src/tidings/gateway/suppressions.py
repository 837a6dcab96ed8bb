"""The suppression list: addresses that bounced hard, complained, or an admin suppressed.
A notification to one is `skipped` with the reason, and never reaches the mail server."""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, select

from tidings.core.batching import Batcher
from tidings.core.cache import MemoryCache
from tidings.core.db import Database, utcnow
from tidings.core.envelope import PaginationMeta
from tidings.core.errors import NotFound
from tidings.core.limits import Pagination
from tidings.gateway.models import Suppression
from tidings.gateway.schemas import SuppressionOut

# Looked up on every email accepted: remembered briefly in process. Another replica's
# addition takes effect here within this time.
CHECK_CACHE_S = 5.0


def _out(row: Suppression) -> SuppressionOut:
    return SuppressionOut(
        address=row.address, reason=row.reason, source=row.source, created_at=row.created_at
    )


class Suppressions:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._checked = MemoryCache(max_entries=100_000)
        # The look-ups of concurrent requests in one statement (core.batching), built once,
        # on the autocommit engine: one round trip, no ORM session (docs/performance.md).
        self._lookups: Batcher[str, str] = Batcher(self._find_many)
        table = cast(Table, Suppression.__table__)
        self._by_address = select(table.c.address, table.c.source, table.c.reason).where(
            table.c.address.in_(bindparam("addresses", expanding=True))
        )

    async def reason_for(self, address: str) -> str | None:
        """Why ``address`` is suppressed, or None."""
        key = address.lower()
        cached = await self._checked.get(key)
        if cached is not None:
            return cached.decode() or None
        reason = await self._lookups.submit(key)
        await self._checked.set(key, reason.encode(), CHECK_CACHE_S)
        return reason or None

    async def reasons_for(self, addresses: Collection[str]) -> dict[str, str]:
        """Many addresses in one statement (a broadcast's page): each lower-cased address
        with why it is suppressed, or "" when it is not."""
        keys = sorted({a.lower() for a in addresses})
        return dict(zip(keys, await self._find_many(keys), strict=True)) if keys else {}

    async def _find_many(self, keys: list[str]) -> list[str]:
        async with self.db.autocommit.connect() as conn:
            rows = await conn.execute(self._by_address, {"addresses": list(set(keys))})
            found = {r.address: f"{r.source}: {r.reason}" for r in rows}
        return [found.get(k, "") for k in keys]

    async def add(self, address: str, reason: str, source: str) -> SuppressionOut:
        key = address.lower()
        stmt = (
            self.db.insert(Suppression.__table__)
            .values(address=key, reason=reason[:1000], source=source, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["address"])
        )
        async with self.db.sessions() as session, session.begin():
            await session.execute(stmt)
            row = await session.get(Suppression, key)
        await self._checked.delete(key)
        assert row is not None
        return _out(row)

    async def remove(self, address: str) -> None:
        key = address.lower()
        async with self.db.sessions() as session, session.begin():
            removed = await session.execute(delete(Suppression).where(Suppression.address == key))
        await self._checked.delete(key)
        if not removed.rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"{address} is not suppressed")

    async def search(self, pages: Pagination) -> tuple[list[SuppressionOut], PaginationMeta]:
        async with self.db.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(Suppression)) or 0
            rows = (
                await session.scalars(
                    select(Suppression)
                    .order_by(Suppression.created_at.desc())
                    .offset(pages.offset)
                    .limit(pages.limit)
                )
            ).all()
        meta = PaginationMeta.of(total=total, page=pages.page, limit=pages.limit)
        return [_out(r) for r in rows], meta
