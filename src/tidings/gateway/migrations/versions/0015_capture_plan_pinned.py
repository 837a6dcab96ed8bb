"""webhook capture: its plan no longer depends on the table sizes of its first call

``webhook_capture()`` (0013) is a PL/pgSQL function, and PL/pgSQL plans its statements once
per connection, at their first run, then keeps the plan: the statement has no parameters, so
nothing makes it plan again (only DDL or an ANALYZE of a table it reads). When that first run
was a large insert while ``notification_events`` was still small (a fresh deployment, a
bench's first batch), the plan read the whole table for each new row's "earlier rows of its
notification" rule, and kept doing so as the table grew: every later insert on that
connection cost a sequential scan of the history (measured: 100 single-row inserts after a
200-row first one, 100 sequential scans; 10,000 notifications took minutes, the status
consumer's row locks waited past the statement timeout and the database breaker opened).
Index paths are now the only ones the function plans with (``enable_seqscan = off`` for its
own statements): the rule reads a notification's rows through its index whatever the sizes
were at planning. Its tables without a fitting index (the transition table, the endpoints)
are still read sequentially, as they must be. SQLite's trigger has no such plan: unchanged.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION webhook_capture() SET enable_seqscan = off")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION webhook_capture() RESET enable_seqscan")
