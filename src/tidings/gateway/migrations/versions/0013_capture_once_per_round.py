"""webhook capture: an event type once per round of a notification

0009 captured a history row when its type differed from the previous row's. A history can
go back and forth, though: when the relay's transaction is lost after its publish, the
outbox row is published again and a second ``queued`` row follows the ``delivered`` of the
first copy, and the worker's report of the duplicate is a second ``delivered`` after it.
Each differed from the row before, so each was captured, and a receiver got
``notification.delivered`` twice under two webhook-ids (seen in a bench with PostgreSQL
refusing connections). Now a row is captured unless a row of the same type is already in the
notification's current round: since its latest ``pending`` row (a resend writes one; a new
notification's first row is one, or ``scheduled``). The trigger's shape, and what a first
report captures, are 0009's; its SQL is repeated here, as a migration is frozen.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _type(row: str) -> str:
    """The event type of a history row, in SQL (both dialects), as in 0009."""
    return (
        f"CASE WHEN {row}.status = 'failed' AND {row}.error LIKE 'bounced:%' "
        f"THEN 'notification.bounced' "
        f"WHEN {row}.status = 'delivered' AND ({row}.detail LIKE 'complaint%' "
        f"OR {row}.detail LIKE 'provider: complaint%') THEN 'notification.complained' "
        f"ELSE 'notification.' || {row}.status END"
    )


def unlike_previous(row: str, distinct: str) -> str:
    """0009's rule: the type differs from the previous history row's."""
    return (
        f"{_type(row)} {distinct} (SELECT {_type('p')} FROM notification_events p "
        f"WHERE p.notification_id = {row}.notification_id AND p.id < {row}.id "
        "ORDER BY p.id DESC LIMIT 1)"
    )


def once_per_round(row: str) -> str:
    """No row of the same type since the notification's latest ``pending`` row."""
    return (
        f"NOT EXISTS (SELECT 1 FROM notification_events p WHERE p.notification_id = "
        f"{row}.notification_id AND p.id < {row}.id AND {_type('p')} = {_type(row)} "
        f"AND p.id > COALESCE((SELECT MAX(q.id) FROM notification_events q "
        f"WHERE q.notification_id = {row}.notification_id AND q.id < {row}.id "
        "AND q.status = 'pending'), 0))"
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


def _postgres_function(rule: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION webhook_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE disabled_at IS NULL) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_outbox ({COLUMNS})
    SELECT {_select("e")}
    FROM new_rows e JOIN notifications n ON n.id = e.notification_id
    WHERE e.status <> 'pending' AND {rule};
    RETURN NULL;
END $$;
"""


def _sqlite_trigger(rule: str) -> str:
    return f"""
CREATE TRIGGER webhook_capture AFTER INSERT ON notification_events
WHEN NEW.status <> 'pending'
    AND EXISTS (SELECT 1 FROM webhook_endpoints WHERE disabled_at IS NULL)
    AND {rule}
BEGIN
    INSERT INTO webhook_outbox ({COLUMNS})
    SELECT {_select("NEW")} FROM notifications n WHERE n.id = NEW.notification_id;
END;
"""


def _replace(rule_of: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        rule = once_per_round("e") if rule_of == "round" else unlike_previous("e", _PG_DISTINCT)
        op.execute(_postgres_function(rule))
    else:
        op.execute("DROP TRIGGER IF EXISTS webhook_capture")
        rule = once_per_round("NEW") if rule_of == "round" else unlike_previous("NEW", "IS NOT")
        op.execute(_sqlite_trigger(rule))


_PG_DISTINCT = "IS DISTINCT FROM"


def upgrade() -> None:
    _replace("round")


def downgrade() -> None:
    _replace("previous")
