"""users: time zone and quiet hours

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("time_zone", sa.String(64), nullable=True))
    op.add_column("users", sa.Column("quiet_hours", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "quiet_hours")
    op.drop_column("users", "time_zone")
