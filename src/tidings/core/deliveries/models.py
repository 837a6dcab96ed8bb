from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidings.core.db import UTCDateTime, utcnow


class DeliveriesBase(DeclarativeBase):
    """A worker's own store (schema ``email`` or ``push``): one row per notification."""


class Delivery(DeliveriesBase):
    __tablename__ = "deliveries"

    notification_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # pending (claimable) | sending (claimed, leased) | sent | failed
    state: Mapped[str] = mapped_column(String(16))
    # The replay generation the row belongs to: a replay (a higher round) may send a
    # notification that failed; a duplicate of the same round may not.
    round: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SentMessage(DeliveriesBase):
    """The email as it went to the mail server (the email worker's, kept for the dashboard
    for ``sent_mail_keep_s`` then dropped: email_worker.sent). One per round: a resend or a
    replay keeps its own."""

    __tablename__ = "sent_messages"

    notification_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
