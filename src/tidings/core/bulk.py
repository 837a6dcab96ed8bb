"""Many rows in one statement, the one way every service writes a batch.

asyncpg runs an ``executemany`` as one statement per row: each row is executed on its own
and a statement trigger fires once per row (the gateway's webhook capture runs for every
history row of a batch). On PostgreSQL these build one statement over ``unnest`` of one array
per column instead: one prepared statement whatever the number of rows, executed once, its
triggers fired once. SQLAlchemy's own multi-row form (``insertmanyvalues``) renders a
statement per batch size, each prepared anew. On SQLite they are an ``executemany`` (its
triggers are per row anyway, and it has no arrays).

A batch's rows all carry the same keys: a row without a column does not get the column's
Python default here (say it in every row)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

# Built once per (table, columns): SQLAlchemy then finds their compiled form in its cache.
_STATEMENTS: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def array_of(table: Table, column: str, dialect: Dialect) -> str:
    """The bound array of one column's values, cast to the column's type (``unnest`` needs
    the element type; asyncpg then encodes the list as that array)."""
    return f"CAST(:{column} AS {table.c[column].type.compile(dialect)}[])"


def _names(rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    names = tuple(rows[0])
    if any(tuple(row) != names for row in rows[1:]):
        raise ValueError(f"every row of a batch needs the same columns: {names}")
    return names


def _arrays(rows: Sequence[Mapping[str, Any]], names: Iterable[str]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in names}


def _postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


def _insert(table: Table, names: tuple[str, ...], dialect: Dialect, upsert: tuple[str, ...]) -> Any:
    key = ("insert", table.name, (*names, "|", *upsert))
    if key not in _STATEMENTS:
        arrays = ", ".join(array_of(table, n, dialect) for n in names)
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays})"
        if upsert:
            sets = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n not in upsert)
            sql += f" ON CONFLICT ({', '.join(upsert)}) DO UPDATE SET {sets}"
        _STATEMENTS[key] = text(sql)
    return _STATEMENTS[key]


def _insert_each(table: Table, names: tuple[str, ...], upsert: tuple[str, ...]) -> Any:
    key = ("insert-each", table.name, (*names, "|", *upsert))
    if key not in _STATEMENTS:
        stmt = sqlite.insert(table)
        if upsert:
            stmt = stmt.on_conflict_do_update(
                index_elements=list(upsert),
                set_={n: stmt.excluded[n] for n in names if n not in upsert},
            )
        _STATEMENTS[key] = stmt
    return _STATEMENTS[key]


async def insert_rows(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    upsert: Sequence[str] = (),
) -> None:
    """Insert ``rows`` (dicts by column name) in one statement, in their order. With
    ``upsert`` (the columns of a unique key), a row whose key is already in the table
    replaces that row's other columns instead (a key twice in one batch is the caller's to
    avoid: PostgreSQL refuses it)."""
    if not rows:
        return
    names = _names(rows)
    if _postgres(conn):
        statement = _insert(table, names, conn.dialect, tuple(upsert))
        await conn.execute(statement, _arrays(rows, names))
    else:
        await conn.execute(_insert_each(table, names, tuple(upsert)), list(rows))


def _update(table: Table, key: str, names: tuple[str, ...], dialect: Dialect) -> Any:
    cache_key = (f"update:{key}", table.name, names)
    if cache_key not in _STATEMENTS:
        columns = (key, *(n for n in names if n != key))
        arrays = ", ".join(array_of(table, n, dialect) for n in columns)
        sets = ", ".join(f"{n} = v.{n}" for n in columns[1:])
        _STATEMENTS[cache_key] = text(
            f"UPDATE {table.name} AS t SET {sets} FROM unnest({arrays}) "
            f"AS v({', '.join(columns)}) WHERE t.{key} = v.{key}"
        )
    return _STATEMENTS[cache_key]


def _update_each(table: Table, key: str, names: tuple[str, ...]) -> Any:
    cache_key = (f"update-each:{key}", table.name, names)
    if cache_key not in _STATEMENTS:
        _STATEMENTS[cache_key] = (
            update(table)
            .where(table.c[key] == bindparam(f"b_{key}"))
            .values({n: bindparam(f"b_{n}") for n in names if n != key})
        )
    return _STATEMENTS[cache_key]


async def update_rows(
    conn: AsyncConnection, table: Table, key: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Set each row's columns on the row of ``table`` whose ``key`` column is the row's, in
    one statement. Give the rows in key order where two writers may update the same rows
    (their locks are then taken in one order); a key twice in a batch is the caller's to
    avoid (which of the two wins is not defined)."""
    if not rows:
        return
    names = _names(rows)
    if _postgres(conn):
        await conn.execute(_update(table, key, names, conn.dialect), _arrays(rows, names))
    else:
        params = [{f"b_{n}": row[n] for n in names} for row in rows]
        await conn.execute(_update_each(table, key, names), params)
