from __future__ import annotations

import datetime as dt

from sqlalchemy import String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidings.core.db import UTCDateTime, utcnow


class PushBase(DeclarativeBase):
    """The push worker's own tables (schema ``push``), beside core's ``deliveries``."""


class DeviceResult(PushBase):
    """What one device made of one notification. core's delivery record says whether the
    notification is done; these rows say which devices already have it, so a retry (or a
    worker taking over after a crash) sends only to the others."""

    __tablename__ = "device_results"

    notification_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # accepted (final) | dead (final: recipient-invalid) | failed (final: permanent)
    # | retrying (transient, provider-auth, unavailable: tried again)
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
