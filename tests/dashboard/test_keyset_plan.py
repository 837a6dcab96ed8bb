"""The dashboard's pages are keyset pages: at any depth, each filter's page is a range scan of
a listing index (EXPLAIN on PostgreSQL; the plan, not the time, is checked). The fast form
has 200,000 rows; the slow one a million, as tests/gateway/test_listing_plan.py."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from sqlalchemy.dialects import postgresql

from tests.listing_rows import notifications_table
from tidings.gateway.dashboard_story import keyset_page
from tidings.gateway.schemas import NotificationFilter

USER = uuid.UUID("00000000-0000-0000-0000-000000000042")


async def plans(database_url: str, rows: int) -> None:
    conn = await notifications_table(database_url, rows, USER)
    try:
        now = dt.datetime.now(dt.UTC)
        deep = (now - dt.timedelta(seconds=rows // 2), uuid.UUID(int=2**127))
        day = now - dt.timedelta(days=1)
        for f in (
            NotificationFilter(),
            NotificationFilter(user_id=USER),
            NotificationFilter(status="failed"),
            NotificationFilter(notification_type="push"),
            NotificationFilter(template_code="template-7"),
            NotificationFilter(request_id="req-1234"),
            NotificationFilter(status="delivered", created_after=day, created_before=now),
        ):
            for cursor in (None, deep):
                sql = str(
                    keyset_page(f, cursor, 51).compile(
                        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
                    )
                ).replace("notifications", "gateway.notifications")
                plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql))
                print(f"{f.model_dump(exclude_defaults=True)} after {cursor}:\n{plan}\n")
                assert "Seq Scan" not in plan and "Index" in plan, (f, cursor, plan)
                # The page starts at the cursor: a range, not a filter (a request id is one
                # row of its own index).
                if cursor is not None and f.request_id is None:
                    assert re.search(r"Index Cond: .*created_at <=", plan), plan
    finally:
        await conn.close()


@pytest.mark.timeout(300)
async def test_keyset_pages_are_index_scans(fresh_pg: str) -> None:
    await plans(fresh_pg, 200_000)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_keyset_pages_are_index_scans_at_a_million_rows(fresh_pg: str) -> None:
    await plans(fresh_pg, 1_000_000)
