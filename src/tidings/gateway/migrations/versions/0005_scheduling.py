"""scheduled notifications: outbox rows wait until available_at

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from tidings.core.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column(
                "available_at",
                UTCDateTime(),
                nullable=False,
                server_default=sa.text("CURRENT_TIMESTAMP"),
            )
        )
    op.create_index("ix_outbox_available_at", "outbox", ["available_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_available_at", "outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("available_at")
