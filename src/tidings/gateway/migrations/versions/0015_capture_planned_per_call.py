"""webhook capture: the rule planned at every call, per row, never against the whole history

``webhook_capture()`` (0013) is a PL/pgSQL function, and PL/pgSQL plans its statements once
per connection, at their first run, and keeps the plan (nothing invalidates it but DDL or an
ANALYZE). Its "no row of this type earlier in the round" rule is a ``NOT EXISTS``, which the
planner turns into an anti-join: from a first call that inserted many rows into a still small,
never analysed history, the kept plan read the whole history (a sequential scan, a sort) at
every later statement, and so did a fresh plan once the history had grown without statistics
(the planner's default guess of rows per notification grows with the table). Measured on
PostgreSQL 15, 50 notifications' ``delivered`` rows per statement: 4.5 ms at 15,000 history rows
and growing with it; a whole benchmark stalled behind those statements.

Now the rule is a scalar subquery (never made a join: it runs per new row, through the index on
``notification_id``) and the insert is an ``EXECUTE``, planned at each call for the tables as
they are: 1.9 to 2.4 ms per such statement from 15,000 to 60,000 rows, about 0.7 ms of it
planning. The planning is paid once per statement, and a statement is a batch (core.bulk).
Pinning the plan to index paths instead (``SET enable_seqscan = off`` on the function) was
measured worse: the anti-join then read the whole history through an index, 31 ms.
SQLite's trigger runs per row with no kept plan: unchanged.

0013's SQL pieces are read from its own file (a frozen migration, as this one is).

Revision ID: 0015
Revises: 0014
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _0013() -> ModuleType:
    path = Path(__file__).with_name("0013_capture_once_per_round.py")
    spec = importlib.util.spec_from_file_location("gateway_0013", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _function(m: ModuleType) -> str:
    """0013's function, its rule a scalar subquery, its insert an EXECUTE."""
    kind = m._type
    rule = (
        "(SELECT count(*) FROM notification_events p WHERE p.notification_id = "
        f"e.notification_id AND p.id < e.id AND {kind('p')} = {kind('e')} "
        "AND p.id > COALESCE((SELECT MAX(q.id) FROM notification_events q "
        "WHERE q.notification_id = e.notification_id AND q.id < e.id "
        "AND q.status = 'pending'), 0)) = 0"
    )
    function = m._postgres_function(rule)
    insert, end = "    INSERT INTO webhook_outbox", f"AND {rule};"
    assert function.count(insert) == 1 and function.count(end) == 1
    return function.replace(insert, "    EXECUTE $q$ INSERT INTO webhook_outbox").replace(
        end, f"AND {rule} $q$;"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_function(_0013()))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        m = _0013()
        op.execute(m._postgres_function(m.once_per_round("e")))
