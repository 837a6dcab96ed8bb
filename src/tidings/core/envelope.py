"""The response envelope every HTTP answer uses, errors and health included."""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")
# The envelope's ``message`` for each error status.
REASONS = {
    401: "unauthorized",
    403: "forbidden",
    400: "bad request",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    429: "too many requests",
    413: "request body too large",
    422: "validation failed",
    503: "unavailable",
}


class PaginationMeta(BaseModel):
    total: int
    limit: int
    page: int
    total_pages: int
    has_next: bool
    has_previous: bool

    @classmethod
    def of(cls, *, total: int, page: int, limit: int) -> PaginationMeta:
        total_pages = math.ceil(total / limit) if limit else 0
        return cls(
            total=total,
            limit=limit,
            page=page,
            total_pages=total_pages,
            has_next=page < total_pages,
            has_previous=page > 1 and total_pages > 0,
        )


class Envelope(BaseModel, Generic[T]):
    success: bool
    data: T | None = None
    error: str | None = None
    message: str
    meta: PaginationMeta | None = None


class ErrorEnvelope(BaseModel):
    """The envelope of every error answer (the schema each documented 4xx/5xx shows)."""

    success: bool
    data: None = None
    error: str
    message: str
    meta: None = None


def ok(data: Any, message: str = "ok", meta: PaginationMeta | None = None) -> dict[str, Any]:
    """A success envelope as a plain dict (FastAPI validates it against the route's model)."""
    return {"success": True, "data": data, "error": None, "message": message, "meta": meta}


def failure(error: str, message: str) -> dict[str, Any]:
    return {"success": False, "data": None, "error": error, "message": message, "meta": None}
