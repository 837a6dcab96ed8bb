from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Boolean, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidings.core.db import UTCDateTime, utcnow


class TemplatesBase(DeclarativeBase):
    """The templates service's own metadata: its tables and nobody else's."""


class TemplateVersion(TemplatesBase):
    """One immutable version of a template; the highest version of a key is the active one.

    Versions are never updated or deleted, so a notification can always be traced to the
    exact text it was rendered from.
    """

    __tablename__ = "template_versions"
    __table_args__ = (
        # Unique: two concurrent saves cannot both claim the same version number; the loser
        # gets an IntegrityError and retries with the next number.
        Index(
            "uq_template_versions_key",
            "code",
            "channel",
            "language",
            "version",
            unique=True,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    # Email uses subject/body/text_body; push uses title/body/image_url/link. The fields the
    # channel does not use stay NULL (one table keeps "latest version of a key" one query).
    subject: Mapped[str | None] = mapped_column(String(998), nullable=True)
    body: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    title: Mapped[str | None] = mapped_column(String(500), nullable=True)
    image_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    link: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    # The category's key (Category); None: uncategorised, only the channel preference applies.
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Category(TemplatesBase):
    """A kind of notification (security, product, marketing…), created by an admin. A
    template names one; users choose per category and channel (users service). A critical
    one cannot be turned off and bypasses quiet hours."""

    __tablename__ = "categories"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    critical: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
