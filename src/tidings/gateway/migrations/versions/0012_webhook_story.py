"""webhook messages by notification: a notification's story lists its webhook deliveries

``webhook_messages.notification_id`` is filled at fan-out from the captured event (the
outbox row already carries it, so the capture trigger of 0009 is unchanged); rows fanned out
before this revision keep NULL and are not shown in a story. The index is the story's
look-up: one range scan per notification.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_messages") as batch:
        batch.add_column(sa.Column("notification_id", sa.Uuid(), nullable=True))
    op.create_index(
        "ix_webhook_messages_notification", "webhook_messages", ["notification_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_messages_notification", "webhook_messages")
    with op.batch_alter_table("webhook_messages") as batch:
        batch.drop_column("notification_id")
