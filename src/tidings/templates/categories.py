"""Categories of notifications (security, account, product, marketing…): created by admins;
a template names one; the users service checks a user's choices against the critical ones."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from tidings.core.db import Database
from tidings.core.errors import Conflict, NotFound
from tidings.core.limits import Pagination
from tidings.templates.models import Category, TemplateVersion
from tidings.templates.schemas import CategoryCreate, CategoryOut, CategoryUpdate


def category_out(row: Category) -> CategoryOut:
    return CategoryOut(
        key=row.key,
        description=row.description,
        critical=row.critical,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class CategoryService:
    """Create, list, change and delete categories; Conflict for a key taken or a category
    that templates still name, NotFound for an unknown key."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, body: CategoryCreate) -> CategoryOut:
        async with self.db.sessions() as session:
            row = Category(key=body.key, description=body.description, critical=body.critical)
            session.add(row)
            try:
                await session.commit()
            except IntegrityError as exc:
                raise Conflict(f"category {body.key!r} already exists") from exc
            return category_out(row)

    async def list(self, pages: Pagination) -> tuple[list[CategoryOut], int]:
        async with self.db.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(Category)) or 0
            rows = await session.scalars(
                select(Category).order_by(Category.key).offset(pages.offset).limit(pages.limit)
            )
            return [category_out(r) for r in rows], total

    async def get(self, key: str) -> CategoryOut:
        async with self.db.sessions() as session:
            row = await session.get(Category, key)
            if row is None:
                raise NotFound(f"category {key!r} not found")
            return category_out(row)

    async def update(self, key: str, body: CategoryUpdate) -> CategoryOut:
        async with self.db.sessions() as session:
            row = await session.get(Category, key, with_for_update=True)
            if row is None:
                raise NotFound(f"category {key!r} not found")
            if body.description is not None:
                row.description = body.description
            if body.critical is not None:
                row.critical = body.critical
            await session.commit()
            return category_out(row)

    async def delete(self, key: str) -> None:
        async with self.db.sessions() as session:
            row = await session.get(Category, key, with_for_update=True)
            if row is None:
                raise NotFound(f"category {key!r} not found")
            used = await session.scalar(
                select(TemplateVersion.code).where(TemplateVersion.category == key).limit(1)
            )
            if used is not None:
                raise Conflict(f"category {key!r} is used by template {used!r}")
            await session.delete(row)
            await session.commit()
