"""What the templates service does, apart from HTTP."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import and_, case, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.db import Database, utcnow
from tidings.core.errors import Conflict, InvalidInput, NotFound
from tidings.core.limits import Pagination
from tidings.core.rendering import (
    EMAIL_FIELDS,
    PUSH_FIELDS,
    check_template,
    render_content_async,
)
from tidings.templates.models import Category, TemplateVersion
from tidings.templates.schemas import (
    RESERVED_CODES,
    Channel,
    EmailTemplateCreate,
    PushTemplateCreate,
    RenderOut,
    RenderRequest,
    TemplateOut,
)

FALLBACK_LANGUAGE = "en"
# A unique-index collision means another writer took the number we computed; with the
# advisory lock on PostgreSQL and SQLite's single writer this is rare, so a few tries suffice.
_SAVE_ATTEMPTS = 3


def to_out(row: TemplateVersion, critical: bool = False) -> TemplateOut:
    return TemplateOut(
        template_id=row.id,
        code=row.code,
        channel=row.channel,  # validated: the column only ever holds a Channel
        language=row.language,
        version=row.version,
        subject=row.subject,
        body=row.body,
        text_body=row.text_body,
        title=row.title,
        image_url=row.image_url,
        link=row.link,
        category=row.category,
        critical=critical,
        created_at=row.created_at,
    )


def language_chain(language: str) -> list[str]:
    """Languages to try, best first: "fr-CA" → fr-CA, fr, en."""
    chain = [language, language.split("-", 1)[0], FALLBACK_LANGUAGE]
    return list(dict.fromkeys(chain))


def _lock_key(code: str, channel: str, language: str) -> int:
    # Advisory locks are database-wide and shared with the other services' schemas, hence
    # the prefix; 64 bits of hash make a collision (a needless wait, never an error) negligible.
    digest = hashlib.blake2b(f"templates\0{code}\0{channel}\0{language}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


async def _critical(session: AsyncSession, category: str | None) -> bool:
    """Whether ``category`` is critical (a category in use cannot be deleted, so it is
    found; False for none)."""
    if category is None:
        return False
    found = await session.get(Category, category)
    return found is not None and found.critical


class TemplateService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, body: EmailTemplateCreate | PushTemplateCreate) -> TemplateOut:
        """Save a new version of ``body``'s code/channel/language; it becomes the active one."""
        if body.code in RESERVED_CODES:
            raise InvalidInput(f"code: {body.code!r} is reserved for the service's own routes")
        if body.category is not None:
            async with self.db.sessions() as session:
                if await session.get(Category, body.category) is None:
                    raise InvalidInput(f"category: no category {body.category!r}")
        names = EMAIL_FIELDS if body.channel == "email" else PUSH_FIELDS
        fields: dict[str, str | None] = {name: getattr(body, name) for name in names}
        # Refuse a broken template when it is saved, not at its first send.
        for name, source in fields.items():
            if source is not None:
                check_template(source, field=name)
        for _ in range(_SAVE_ATTEMPTS):
            try:
                return await self._insert_next_version(body, fields)
            except IntegrityError:
                continue
        raise Conflict(
            f"template {body.code!r} ({body.channel}, {body.language}) is being changed "
            "concurrently; try again"
        )

    async def _insert_next_version(
        self, body: EmailTemplateCreate | PushTemplateCreate, fields: dict[str, str | None]
    ) -> TemplateOut:
        key = (
            TemplateVersion.code == body.code,
            TemplateVersion.channel == body.channel,
            TemplateVersion.language == body.language,
        )
        # Computed in the INSERT itself: on SQLite the statement holds the write lock from its
        # start, so the read of max(version) cannot go stale before the write.
        next_version = (
            select(func.coalesce(func.max(TemplateVersion.version), 0) + 1)
            .where(*key)
            .scalar_subquery()
        )
        row_id = uuid.uuid4()
        async with self.db.sessions() as session, session.begin():
            if self.db.is_postgres:
                # Under READ COMMITTED two writers would both read the same max; serialise the
                # writers of this one key (released at commit) so neither has to retry.
                lock = _lock_key(body.code, body.channel, body.language)
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})
            await session.execute(
                insert(TemplateVersion).values(
                    id=row_id,
                    code=body.code,
                    channel=body.channel,
                    language=body.language,
                    version=next_version,
                    # Taken after the lock, so created_at follows version order per key and
                    # "newest first" lists agree with version numbers.
                    created_at=utcnow(),
                    category=body.category,
                    **fields,
                )
            )
            row = await session.get_one(TemplateVersion, row_id)
            return to_out(row, await _critical(session, row.category))

    async def _active_row(
        self, session: AsyncSession, code: str, channel: Channel, language: str
    ) -> TemplateVersion:
        chain = language_chain(language)
        # One query for the whole fallback chain: the best language first, then its newest.
        ranks = {lang: rank for rank, lang in enumerate(chain)}
        preference = case(ranks, value=TemplateVersion.language)
        row = await session.scalar(
            select(TemplateVersion)
            .where(
                TemplateVersion.code == code,
                TemplateVersion.channel == channel,
                TemplateVersion.language.in_(chain),
            )
            .order_by(preference, TemplateVersion.version.desc())
            .limit(1)
        )
        if row is None:
            tried = ", ".join(chain)
            raise NotFound(f"template {code!r} for {channel} not found (languages tried: {tried})")
        return row

    async def active(self, code: str, channel: Channel, language: str) -> TemplateOut:
        async with self.db.sessions() as session:
            row = await self._active_row(session, code, channel, language)
            return to_out(row, await _critical(session, row.category))

    async def versions(
        self,
        code: str,
        channel: Channel | None,
        language: str | None,
        pages: Pagination,
    ) -> tuple[list[TemplateOut], int]:
        """Every version of ``code`` (optionally one channel/language), newest first."""
        where: list[Any] = [TemplateVersion.code == code]
        if channel is not None:
            where.append(TemplateVersion.channel == channel)
        if language is not None:
            where.append(TemplateVersion.language == language)
        async with self.db.sessions() as session:
            total = await session.scalar(select(func.count()).where(*where)) or 0
            if total == 0:
                # Filters that match nothing give an empty page; an unknown code is a 404.
                exists = await session.scalar(
                    select(TemplateVersion.id).where(TemplateVersion.code == code).limit(1)
                )
                if exists is None:
                    raise NotFound(f"template {code!r} not found")
            rows = await session.scalars(
                select(TemplateVersion)
                .where(*where)
                .order_by(
                    TemplateVersion.created_at.desc(),
                    TemplateVersion.version.desc(),
                    TemplateVersion.id,
                )
                .offset(pages.offset)
                .limit(pages.limit)
            )
            return [to_out(row) for row in rows], total

    async def list_active(self, pages: Pagination) -> tuple[list[TemplateOut], int]:
        """The active version of every code/channel/language, sorted by that key."""
        latest = (
            select(
                TemplateVersion.code,
                TemplateVersion.channel,
                TemplateVersion.language,
                func.max(TemplateVersion.version).label("version"),
            )
            .group_by(TemplateVersion.code, TemplateVersion.channel, TemplateVersion.language)
            .subquery()
        )
        async with self.db.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(latest)) or 0
            rows = await session.scalars(
                select(TemplateVersion)
                .join(
                    latest,
                    and_(
                        TemplateVersion.code == latest.c.code,
                        TemplateVersion.channel == latest.c.channel,
                        TemplateVersion.language == latest.c.language,
                        TemplateVersion.version == latest.c.version,
                    ),
                )
                .order_by(TemplateVersion.code, TemplateVersion.channel, TemplateVersion.language)
                .offset(pages.offset)
                .limit(pages.limit)
            )
            return [to_out(row) for row in rows], total

    async def render(self, code: str, request: RenderRequest) -> RenderOut:
        template = await self.active(code, request.channel, request.language)
        # InvalidInput names a missing variable or the bound a template went past; the core
        # handler turns it into a 422 envelope. In a thread: a heavy template must not stall
        # the service's other requests (docs/decisions.md, "Templates under a budget").
        rendered = await render_content_async(
            template.channel, template.model_dump(), request.variables
        )
        return RenderOut(
            code=template.code,
            channel=template.channel,
            language=template.language,
            version=template.version,
            rendered=rendered,
        )
