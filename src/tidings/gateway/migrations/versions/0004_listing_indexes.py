"""indexes for listing notifications by each filter, newest first

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_notifications_status", "notifications")
    op.create_index("ix_notifications_status_created", "notifications", ["status", "created_at"])
    op.create_index(
        "ix_notifications_type_created", "notifications", ["notification_type", "created_at"]
    )
    op.create_index(
        "ix_notifications_template_created", "notifications", ["template_code", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_template_created", "notifications")
    op.drop_index("ix_notifications_type_created", "notifications")
    op.drop_index("ix_notifications_status_created", "notifications")
    op.create_index("ix_notifications_status", "notifications", ["status"])
