"""notifications belong to the client that created them; request ids unique per client

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# SQLite's copy of the table names its unnamed unique constraint by this convention, so the
# batch can drop it (PostgreSQL named it itself: <table>_<column>_key).
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    # Notifications from before owners were kept: the admin's (any admin reads them all).
    owner = sa.Column("owner", sa.String(64), nullable=False, server_default="admin")
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("notifications", owner)
        op.drop_constraint("notifications_request_id_key", "notifications", type_="unique")
    else:
        with op.batch_alter_table("notifications", naming_convention=_NAMING) as batch:
            batch.add_column(owner)
            batch.drop_constraint("uq_notifications_request_id", type_="unique")
    op.create_index(
        "ux_notifications_owner_request", "notifications", ["owner", "request_id"], unique=True
    )
    op.create_index("ix_notifications_owner_created", "notifications", ["owner", "created_at"])
    # The admin's request_id filter, across owners (the unique index served it before).
    op.create_index("ix_notifications_request", "notifications", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_request", "notifications")
    op.drop_index("ix_notifications_owner_created", "notifications")
    op.drop_index("ux_notifications_owner_request", "notifications")
    if op.get_bind().dialect.name == "postgresql":
        op.create_unique_constraint("notifications_request_id_key", "notifications", ["request_id"])
        op.drop_column("notifications", "owner")
    else:
        with op.batch_alter_table("notifications", naming_convention=_NAMING) as batch:
            batch.create_unique_constraint("uq_notifications_request_id", ["request_id"])
            batch.drop_column("owner")
