"""categories, and a template version's category

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
        "categories",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.add_column("template_versions", sa.Column("category", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("template_versions", "category")
    op.drop_table("categories")
