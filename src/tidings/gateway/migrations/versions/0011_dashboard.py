"""the dashboard's per-minute samples of each gateway replica (gateway.dashboard_samples)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from tidings.core.db import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_samples",
        sa.Column("replica", sa.String(64), primary_key=True),
        sa.Column("minute", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_dashboard_samples_minute", "dashboard_samples", ["minute"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_samples_minute", "dashboard_samples")
    op.drop_table("dashboard_samples")
