"""The bounds every input is held to, in one place: what PostgreSQL can store, what the
workers can encode, and how far a page may reach. The services' schemas use the types here
(a value past a bound is a 422 that names the bound); ``check_json`` holds free-form JSON
(``JsonObject``, and what a schema gathers from several fields) to the same bounds.

PostgreSQL cannot store a NUL character in ``text`` or ``jsonb``, nor a lone UTF-16
surrogate (Python's ``json`` module makes one from ``"\\ud800"``, and asyncpg cannot encode
it): either used to reach the database and answer 500.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

# A page reaches at most MAX_PAGE * MAX_LIMIT rows deep (an OFFSET of a million rows is
# already slow; past it, narrow the listing with filters). An unbounded page overflowed the
# database's 64-bit OFFSET (500).
MAX_PAGE = 10_000
MAX_LIMIT = 100
# Nesting of free-form JSON (variables, metadata). orjson refuses past 255 levels and
# Python's recursion limit is near; 32 is far deeper than any real template needs.
MAX_JSON_DEPTH = 32
# Integers in free-form JSON: what orjson, JavaScript-free 64-bit consumers and the
# workers' encoders all take.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Record ids (dead letters): PostgreSQL bigint.
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class LimitExceeded(ValueError):
    """A value past one of the bounds above; the message names the bound."""


def check_text(value: str) -> str:
    """``value`` if PostgreSQL can store it; else ValueError (pydantic makes it a 422)."""
    found = _UNSTORABLE.search(value)
    if found is not None:
        what = "a NUL character" if found.group() == "\x00" else "a lone surrogate"
        raise LimitExceeded(f"contains {what} (position {found.start()}), which cannot be stored")
    return value


# On every string that reaches PostgreSQL, after its other constraints (pydantic applies
# StringConstraints placed after a validator to nothing): Annotated[str, StringConstraints(
# max_length=…), Storable].
Storable = AfterValidator(check_text)


def check_json(value: Any) -> Any:
    """``value`` (parsed JSON) if it is within the bounds: nesting at most ``MAX_JSON_DEPTH``,
    integers in the signed 64-bit range, strings and keys storable. Iterative, so a value
    nested thousands deep is refused rather than exhausting the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise LimitExceeded(f"nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                for key in item:
                    check_text(str(key))
            children = list(item.values()) if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            check_text(item)
        elif isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
            raise LimitExceeded("an integer is outside the signed 64-bit range")
    return value


# Free-form JSON objects from clients (metadata, a template's variables).
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]


def check_timestamp(value: dt.datetime) -> dt.datetime:
    """Aware and in UTC (a timestamp without a zone is taken as UTC). A time whose UTC
    conversion leaves Python's years 1 to 9999 (``0001-01-01T00:00:00+01:00``) is refused;
    it used to raise OverflowError in the database driver (500)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise LimitExceeded("is outside the years 1 to 9999 in UTC") from None


Timestamp = Annotated[dt.datetime, AfterValidator(check_timestamp)]


class Pagination(BaseModel):
    """``?page=&limit=`` of every listing (a query model: ``Annotated[X, Query()]``)."""

    page: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 1
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 20

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit
