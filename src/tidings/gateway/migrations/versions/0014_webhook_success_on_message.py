"""webhook messages: a successful attempt is written on its message, not as an attempt row

Issue #14 (a receiver's events cost the mail path on a shared machine, docs/performance.md):
nearly every event succeeds at its first attempt, and its attempt row repeated what the
message's outcome already wrote (when, the status code) with two more figures. Those two
(how long the request took, the answer's excerpt) now go on the message, and
``webhook_attempts`` keeps the attempts that did not succeed: one row insert (and its two
index entries) fewer per event. The API's ``attempt_log`` is the attempt rows followed by
the success on the message, as before. Messages delivered before this revision keep their
attempt row and have neither column, so nothing is shown twice.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_messages") as batch:
        batch.add_column(sa.Column("delivered_duration_ms", sa.Float(), nullable=True))
        batch.add_column(sa.Column("delivered_excerpt", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_messages") as batch:
        batch.drop_column("delivered_excerpt")
        batch.drop_column("delivered_duration_ms")
