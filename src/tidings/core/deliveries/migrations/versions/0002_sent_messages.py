"""sent_messages: the email as it went to the mail server, kept a few days for the dashboard

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from tidings.core.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sent_messages",
        sa.Column("notification_id", sa.String(64), primary_key=True),
        sa.Column("round", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_sent_messages_created_at", "sent_messages", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_sent_messages_created_at", "sent_messages")
    op.drop_table("sent_messages")
