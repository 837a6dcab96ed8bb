"""webhook messages by notification: a notification's story lists its webhook deliveries

``webhook_messages.notification_id`` is filled at fan-out from the captured event (the
outbox row already carries it, so the capture trigger of 0009 is unchanged). The messages
fanned out before this revision get it from their body (``data.notification_id``: every
notification event and ``device.removed``), in one statement: retention keeps a week of
delivered messages, so the table is bounded. The index is the story's look-up: one range
scan per notification.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
POSTGRES_BACKFILL = f"""
UPDATE webhook_messages SET notification_id = CAST(found AS uuid)
FROM (
    SELECT id AS message_id,
           convert_from(payload, 'UTF8')::jsonb -> 'data' ->> 'notification_id' AS found
    FROM webhook_messages WHERE notification_id IS NULL
) AS bodies
WHERE webhook_messages.id = bodies.message_id AND bodies.found ~ '{UUID_PATTERN}'
"""
# SQLite keeps a Uuid as its 32 hex digits.
SQLITE_FOUND = "json_extract(CAST(payload AS TEXT), '$.data.notification_id')"
SQLITE_BACKFILL = f"""
UPDATE webhook_messages SET notification_id = lower(replace({SQLITE_FOUND}, '-', ''))
WHERE notification_id IS NULL AND json_valid(CAST(payload AS TEXT))
    AND length({SQLITE_FOUND}) = 36
"""


def upgrade() -> None:
    with op.batch_alter_table("webhook_messages") as batch:
        batch.add_column(sa.Column("notification_id", sa.Uuid(), nullable=True))
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute(POSTGRES_BACKFILL if postgres else SQLITE_BACKFILL)
    op.create_index(
        "ix_webhook_messages_notification", "webhook_messages", ["notification_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_messages_notification", "webhook_messages")
    with op.batch_alter_table("webhook_messages") as batch:
        batch.drop_column("notification_id")
