"""At a million notifications, every filtered, newest-first page is an index scan (shown with
EXPLAIN on PostgreSQL; the plan, not the time, is what is checked)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy.dialects import postgresql

from tests.listing_rows import notifications_table
from tidings.gateway.listing import page_query
from tidings.gateway.schemas import NotificationFilter

ROWS = 1_000_000
USER = uuid.UUID("00000000-0000-0000-0000-000000000042")


@pytest.mark.timeout(300)
async def test_filtered_pages_are_index_scans_at_a_million_rows(fresh_pg: str) -> None:
    conn = await notifications_table(fresh_pg, ROWS, USER)
    try:
        week_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
        filters = [
            NotificationFilter(),
            NotificationFilter(user_id=USER),
            NotificationFilter(status="failed"),
            NotificationFilter(notification_type="push", page=3),
            NotificationFilter(template_code="template-7", limit=100),
            NotificationFilter(request_id="req-123456"),
            NotificationFilter(status="pending", created_after=week_ago),
        ]
        # An API key without notifications:read_all sees only its own (the owner's index).
        owned = [(f, None) for f in filters] + [
            (NotificationFilter(), "admin"),
            (NotificationFilter(request_id="req-123456"), "admin"),
            (NotificationFilter(status="failed"), "admin"),
        ]
        for f, owner in owned:
            sql = str(
                page_query(f, owner).compile(
                    dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
                )
            ).replace("notifications", "gateway.notifications")
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql))
            print(f"{f.model_dump(exclude_defaults=True)}:\n{plan}\n")
            assert "Seq Scan" not in plan, plan
            assert "Index" in plan, plan
    finally:
        await conn.close()
