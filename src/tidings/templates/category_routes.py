"""/api/v1/templates/categories/: under the templates prefix so that the gateway's proxy
forwards it like the templates (the code "categories" is reserved for it)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from tidings.core.access import Caller, current_principal
from tidings.core.envelope import Envelope, PaginationMeta, ok
from tidings.core.limits import Pagination
from tidings.core.openapi import errors
from tidings.core.web import from_state
from tidings.templates.categories import CategoryService
from tidings.templates.schemas import (
    CATEGORY_PATTERN,
    CategoryCreate,
    CategoryOut,
    CategoryUpdate,
)

router = APIRouter(
    prefix="/api/v1/templates/categories",
    tags=["categories"],
    dependencies=[Depends(current_principal)],
)
Categories = Annotated[CategoryService, Depends(from_state("categories"))]
KeyPath = Annotated[str, Path(min_length=1, max_length=64, pattern=CATEGORY_PATTERN)]
Pages = Annotated[Pagination, Query()]


@router.post("/", status_code=201, response_model=Envelope[CategoryOut], responses=errors(409))
async def create_category(
    body: CategoryCreate, categories: Categories, caller: Caller
) -> dict[str, Any]:
    caller.require("admin")
    return ok(await categories.create(body), f"category {body.key!r} created")


@router.get("/", response_model=Envelope[list[CategoryOut]])
async def list_categories(categories: Categories, pages: Pages) -> dict[str, Any]:
    items, total = await categories.list(pages)
    meta = PaginationMeta.of(total=total, page=pages.page, limit=pages.limit)
    return ok(items, "categories", meta)


@router.get("/{key}/", response_model=Envelope[CategoryOut])
async def get_category(key: KeyPath, categories: Categories) -> dict[str, Any]:
    return ok(await categories.get(key), "category found")


@router.patch("/{key}/", response_model=Envelope[CategoryOut])
async def update_category(
    key: KeyPath, body: CategoryUpdate, categories: Categories, caller: Caller
) -> dict[str, Any]:
    caller.require("admin")
    return ok(await categories.update(key, body), f"category {key!r} updated")


# 409: templates still name it.
@router.delete("/{key}/", response_model=Envelope[None], responses=errors(409))
async def delete_category(key: KeyPath, categories: Categories, caller: Caller) -> dict[str, Any]:
    caller.require("admin")
    await categories.delete(key)
    return ok(None, f"category {key!r} deleted")
