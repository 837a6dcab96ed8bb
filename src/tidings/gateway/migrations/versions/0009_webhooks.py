"""outbound webhooks: endpoints, the capture outbox and its trigger, messages, attempts

Every history row (notification_events) is the record of a status change, whoever wrote it
(acceptance, the relay's queued, the status consumer, cancel, the reconciler, dead letters,
feedback). A trigger on that table captures the ones webhooks report into webhook_outbox, in
the same transaction: nothing is lost, no caller had to change, and while no endpoint is
enabled it costs one index probe per statement (docs/decisions.md, "Outbound webhooks").

An event is captured when its type differs from the previous history row's of the same
notification (a repeated report, a redelivered batch, is no change), and it is not
``pending``. Types: notification.<status>; a failed row whose error starts ``bounced:`` is
notification.bounced; a delivered row whose detail speaks of a complaint is
notification.complained.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from tidings.core.db import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _type(row: str) -> str:
    """The event type of a history row, in SQL (both dialects)."""
    return (
        f"CASE WHEN {row}.status = 'failed' AND {row}.error LIKE 'bounced:%' "
        f"THEN 'notification.bounced' "
        f"WHEN {row}.status = 'delivered' AND ({row}.detail LIKE 'complaint%' "
        f"OR {row}.detail LIKE 'provider: complaint%') THEN 'notification.complained' "
        f"ELSE 'notification.' || {row}.status END"
    )


def _previous(row: str) -> str:
    return (
        f"(SELECT {_type('p')} FROM notification_events p WHERE p.notification_id = "
        f"{row}.notification_id AND p.id < {row}.id ORDER BY p.id DESC LIMIT 1)"
    )


COLUMNS = (
    "event_id, event_type, owner, notification_id, request_id, user_id, channel, status, "
    "detail, error, attempt, round, created_at"
)


def _select(row: str) -> str:
    return (
        f"{row}.id, {_type(row)}, n.owner, n.id, n.request_id, n.user_id, "
        f"n.notification_type, {row}.status, {row}.detail, {row}.error, {row}.attempt, "
        f"n.round, {row}.created_at"
    )


POSTGRES_FUNCTION = f"""
CREATE FUNCTION webhook_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE disabled_at IS NULL) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_outbox ({COLUMNS})
    SELECT {_select("e")}
    FROM new_rows e JOIN notifications n ON n.id = e.notification_id
    WHERE e.status <> 'pending' AND {_type("e")} IS DISTINCT FROM {_previous("e")};
    RETURN NULL;
END $$;
"""
POSTGRES_TRIGGER = """
CREATE TRIGGER webhook_capture AFTER INSERT ON notification_events
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION webhook_capture();
"""
SQLITE_TRIGGER = f"""
CREATE TRIGGER webhook_capture AFTER INSERT ON notification_events
WHEN NEW.status <> 'pending'
    AND EXISTS (SELECT 1 FROM webhook_endpoints WHERE disabled_at IS NULL)
    AND {_type("NEW")} IS NOT {_previous("NEW")}
BEGIN
    INSERT INTO webhook_outbox ({COLUMNS})
    SELECT {_select("NEW")} FROM notifications n WHERE n.id = NEW.notification_id;
END;
"""


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False, index=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("previous_secret", sa.LargeBinary(), nullable=True),
        sa.Column("previous_until", UTCDateTime(), nullable=True),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_since", UTCDateTime(), nullable=True),
        sa.Column("last_success_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "webhook_outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("notification_id", sa.Uuid(), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("channel", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("round", sa.Integer(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "webhook_messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "endpoint_id",
            sa.Uuid(),
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("webhook_id", sa.String(64), nullable=False, unique=True),
        sa.Column("event_key", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("endpoint_id", "event_key", name="ux_webhook_messages_event"),
    )
    op.create_index("ix_webhook_messages_due", "webhook_messages", ["state", "next_attempt_at"])
    op.create_index(
        "ix_webhook_messages_endpoint", "webhook_messages", ["endpoint_id", "created_at"]
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "message_id",
            BigId,
            sa.ForeignKey("webhook_messages.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS webhook_capture"
        + (" ON notification_events" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS webhook_capture()")
    for table in ("webhook_attempts", "webhook_messages", "webhook_outbox", "webhook_endpoints"):
        op.drop_table(table)
