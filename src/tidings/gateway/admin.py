"""Admin endpoints: dead letters and their replay. Every call needs the admin key."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from tidings.core.access import require_admin
from tidings.core.envelope import Envelope, ok
from tidings.core.limits import Int64, Pagination, Storable
from tidings.gateway.dependencies import Keys, Letters, Suppressed
from tidings.gateway.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    DeadLetterFilter,
    DeadLetterOut,
    ReplayRequest,
    ReplayResult,
    SuppressionIn,
    SuppressionOut,
)

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.get("/dead-letters/", response_model=Envelope[list[DeadLetterOut]])
async def list_dead_letters(
    letters: Letters, query: Annotated[DeadLetterFilter, Query()]
) -> dict[str, Any]:
    rows, meta = await letters.search(query)
    return ok(rows, f"{meta.total} dead letter(s)", meta)


@router.get("/dead-letters/{dead_letter_id}/", response_model=Envelope[DeadLetterOut])
async def get_dead_letter(dead_letter_id: Int64, letters: Letters) -> dict[str, Any]:
    return ok(await letters.get(dead_letter_id), "dead letter found")


@router.post("/dead-letters/replay/", response_model=Envelope[list[ReplayResult]])
async def replay_dead_letters(body: ReplayRequest, letters: Letters) -> dict[str, Any]:
    results = await letters.replay(body)
    replayed = sum(r.outcome == "replayed" for r in results)
    return ok(results, f"{replayed} replayed, {len(results) - replayed} skipped")


@router.post("/api-keys/", status_code=201, response_model=Envelope[ApiKeyCreated])
async def create_api_key(body: ApiKeyCreate, keys: Keys) -> dict[str, Any]:
    return ok(await keys.create(body), "API key created: the key is shown this once")


@router.get("/api-keys/", response_model=Envelope[list[ApiKeyOut]])
async def list_api_keys(keys: Keys) -> dict[str, Any]:
    return ok(await keys.list(), "API keys")


@router.delete("/api-keys/{api_key_id}/", response_model=Envelope[ApiKeyOut])
async def revoke_api_key(api_key_id: uuid.UUID, keys: Keys) -> dict[str, Any]:
    return ok(await keys.revoke(api_key_id), "API key revoked")


@router.get("/suppressions/", response_model=Envelope[list[SuppressionOut]])
async def list_suppressions(
    suppressions: Suppressed, pages: Annotated[Pagination, Query()]
) -> dict[str, Any]:
    rows, meta = await suppressions.search(pages)
    return ok(rows, f"{meta.total} suppressed address(es)", meta)


@router.post("/suppressions/", status_code=201, response_model=Envelope[SuppressionOut])
async def add_suppression(body: SuppressionIn, suppressions: Suppressed) -> dict[str, Any]:
    return ok(await suppressions.add(body.address, body.reason, "manual"), "address suppressed")


@router.delete("/suppressions/{address}/", response_model=Envelope[None])
async def remove_suppression(
    address: Annotated[str, Path(max_length=320), Storable], suppressions: Suppressed
) -> dict[str, Any]:
    await suppressions.remove(address)
    return ok(None, f"{address} is no longer suppressed")
