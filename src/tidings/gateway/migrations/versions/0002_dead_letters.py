"""status ordering (round, attempt); dead letters and their replays

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

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("round", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "dead_letters",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("notification_id", sa.Uuid(), nullable=True),
        sa.Column("source_queue", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("replay_count", sa.Integer(), nullable=False),
        sa.Column("replayed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_dead_letters_notification_id", "dead_letters", ["notification_id"])
    op.create_index("ix_dead_letters_created_at", "dead_letters", ["created_at"])
    op.create_table(
        "replays",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "dead_letter_id",
            BigId,
            sa.ForeignKey("dead_letters.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("notification_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_replays_dead_letter_id", "replays", ["dead_letter_id"])


def downgrade() -> None:
    op.drop_table("replays")
    op.drop_table("dead_letters")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("attempt")
        batch.drop_column("round")
