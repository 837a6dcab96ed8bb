from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from tidings.core.access import Caller, current_principal
from tidings.core.envelope import Envelope, PaginationMeta, ok
from tidings.core.limits import Pagination
from tidings.core.openapi import errors
from tidings.templates.dependencies import Templates
from tidings.templates.schemas import (
    CODE_MAX_LENGTH,
    CODE_PATTERN,
    LANGUAGE_PATTERN,
    Channel,
    RenderOut,
    RenderRequest,
    TemplateCreate,
    TemplateOut,
)

# Every route needs a caller; writing and rendering need templates:write.
router = APIRouter(
    prefix="/api/v1/templates", tags=["templates"], dependencies=[Depends(current_principal)]
)

# A malformed code is refused as such (422) rather than looked up and reported missing.
CodePath = Annotated[str, Path(min_length=1, max_length=CODE_MAX_LENGTH, pattern=CODE_PATTERN)]
LanguageQuery = Annotated[str, Query(pattern=LANGUAGE_PATTERN)]
Pages = Annotated[Pagination, Query()]


# 409: saved concurrently by another request, past the retries.
@router.post("/", status_code=201, response_model=Envelope[TemplateOut], responses=errors(409))
async def create_template(
    body: TemplateCreate, templates: Templates, caller: Caller
) -> dict[str, Any]:
    caller.require("templates:write")
    out = await templates.create(body)
    return ok(out, f"template {out.code!r} version {out.version} created")


@router.get("/", response_model=Envelope[list[TemplateOut]])
async def list_templates(templates: Templates, pages: Pages) -> dict[str, Any]:
    items, total = await templates.list_active(pages)
    meta = PaginationMeta.of(total=total, page=pages.page, limit=pages.limit)
    return ok(items, "active templates", meta)


@router.get("/{code}/", response_model=Envelope[TemplateOut])
async def get_template(
    code: CodePath,
    templates: Templates,
    channel: Channel = "email",
    language: LanguageQuery = "en",
) -> dict[str, Any]:
    return ok(await templates.active(code, channel, language), "template found")


@router.get("/{code}/versions/", response_model=Envelope[list[TemplateOut]])
async def list_versions(
    code: CodePath,
    templates: Templates,
    pages: Pages,
    channel: Channel | None = None,
    language: Annotated[str | None, Query(pattern=LANGUAGE_PATTERN)] = None,
) -> dict[str, Any]:
    items, total = await templates.versions(code, channel, language, pages)
    meta = PaginationMeta.of(total=total, page=pages.page, limit=pages.limit)
    return ok(items, f"versions of template {code!r}", meta)


@router.post("/{code}/render/", response_model=Envelope[RenderOut])
async def render_template(
    code: CodePath, body: RenderRequest, templates: Templates, caller: Caller
) -> dict[str, Any]:
    # A render spends CPU on any variables given: for template authors (templates:write)
    # and the gateway's dashboard preview, which calls with the service credential.
    if caller.kind != "service":
        caller.require("templates:write")
    return ok(await templates.render(code, body), "template rendered")
