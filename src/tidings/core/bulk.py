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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import JSON, Table, bindparam, insert, inspect, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.core import jsons

if TYPE_CHECKING:
    from tidings.core.db import Database

M = TypeVar("M")

# Per ORM class: (column name, attribute name) of each column, read once (``inspect`` per
# row cost more than the rest of ``column_values``).
_COLUMN_ATTRS: dict[type, tuple[tuple[str, str], ...]] = {}


def _column_attrs(cls: type) -> tuple[tuple[str, str], ...]:
    attrs: Any = inspect(cls).column_attrs
    pairs = _COLUMN_ATTRS[cls] = tuple((p.columns[0].key, p.key) for p in attrs)
    return pairs


def column_values(row: Any) -> dict[str, Any]:
    """An ORM object's values by column name, for a Core bulk INSERT (a database-made id left
    out). Core, not the ORM's bulk path: per batch the ORM's machinery cost more than the
    statements (py-spy; docs/performance.md). Read from the object's own dict, where the
    ORM keeps what was set (None for what was not, as ``getattr`` answers for a new object)."""
    pairs = _COLUMN_ATTRS.get(type(row)) or _column_attrs(type(row))
    state = vars(row)
    values = {column: state.get(attr) for column, attr in pairs}
    if values.get("id") is None:
        values.pop("id", None)
    return values


def loaded(cls: type[M], row: Any) -> M:
    """A row read by a Core statement as an object of ORM class ``cls`` (in no session:
    read, never written back)."""
    pairs = _COLUMN_ATTRS.get(cls) or _column_attrs(cls)
    values = row._mapping
    return cls(**{attr: values[column] for column, attr in pairs})


# Built once per (table, columns): SQLAlchemy then finds their compiled form in its cache.
_STATEMENTS: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def array_of(table: Table, column: str, dialect: Dialect, prefix: str = "") -> str:
    """The bound array of one column's values, cast to the column's type (``unnest`` needs
    the element type; asyncpg then encodes the list as that array). ``prefix``: before the
    parameter's name, where two tables of one statement share a column name."""
    return f"CAST(:{prefix}{column} AS {table.c[column].type.compile(dialect)}[])"


def _names(rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    names = tuple(rows[0])
    if any(tuple(row) != names for row in rows[1:]):
        raise ValueError(f"every row of a batch needs the same columns: {names}")
    return names


def _arrays(rows: Sequence[Mapping[str, Any]], names: Iterable[str]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in names}


def _json_arrays(
    table: Table, rows: Sequence[Mapping[str, Any]], names: Iterable[str], prefix: str
) -> dict[str, list[Any]]:
    """``_arrays`` with each parameter's name prefixed, and a JSON column's values as their
    JSON text (a textual statement's parameters skip SQLAlchemy's type processing)."""
    arrays: dict[str, list[Any]] = {}
    for name in names:
        values = [row[name] for row in rows]
        if isinstance(table.c[name].type, JSON):
            values = [jsons.dumps(v).decode() for v in values]
        arrays[prefix + name] = values
    return arrays


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


@dataclass(frozen=True)
class Linked:
    """Rows of a table that refer to parent rows by their ``key`` column: written with the
    parent they name if that parent was inserted, not at all if it was not. ``returning``: a
    column each written row answers (its database-made id), by parent; at most one such row
    per parent."""

    table: Table
    key: str
    rows: Sequence[Mapping[str, Any]]
    returning: str | None = None


async def insert_linked(
    db: Database,
    parent: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    linked: Sequence[Linked],
) -> tuple[set[Any], list[dict[Any, Any]]]:
    """Insert ``rows`` into ``parent`` (a row whose ``conflict`` key is taken, by another
    row or an earlier one of ``rows``, is skipped) and the ``linked`` rows of the parents
    inserted, all or nothing. Returns the ids of the inserted parents and, for each linked
    table with ``returning``, {parent id: the value returned}.

    On PostgreSQL one statement (data-modifying CTEs, in autocommit): one round trip where a
    transaction of a statement per table takes two more, and as atomic. On SQLite, which
    has no data-modifying CTEs, a transaction of one statement per table."""
    if not rows:
        return set(), [{} for link in linked if link.returning]
    if db.is_postgres:
        async with db.autocommit.connect() as conn:
            return await _linked_postgres(conn, parent, rows, tuple(conflict), linked)
    async with db.engine.begin() as conn:
        return await _linked_each(conn, parent, rows, tuple(conflict), linked)


def _linked_statement(
    dialect: Dialect,
    parent: Table,
    names: tuple[str, ...],
    conflict: tuple[str, ...],
    linked: Sequence[tuple[Linked, tuple[str, ...]]],
) -> Any:
    shape = (f"{k.table.name}:{k.key}:{k.returning}:{','.join(n)}" for k, n in linked)
    key = ("linked", parent.name, (*names, "|", *conflict, "|", *shape))
    if key not in _STATEMENTS:
        arrays = ", ".join(array_of(parent, n, dialect, "p_") for n in names)
        ctes = [
            f"p AS (INSERT INTO {parent.name} ({', '.join(names)}) SELECT * FROM "
            f"unnest({arrays}) ON CONFLICT ({', '.join(conflict)}) DO NOTHING RETURNING id)"
        ]
        select, joins = ["p.id"], []
        for i, (link, columns) in enumerate(linked):
            values = ", ".join(array_of(link.table, n, dialect, f"l{i}_") for n in columns)
            cte = (
                f"l{i} AS (INSERT INTO {link.table.name} ({', '.join(columns)}) SELECT * FROM "
                f"unnest({values}) AS v({', '.join(columns)}) "
                f"WHERE v.{link.key} IN (SELECT id FROM p)"
            )
            if link.returning:
                cte += f" RETURNING {link.key} AS k, {link.returning} AS r"
                select.append(f"l{i}.r")
                joins.append(f" LEFT JOIN l{i} ON l{i}.k = p.id")
            ctes.append(cte + ")")
        sql = f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM p{''.join(joins)}"
        _STATEMENTS[key] = text(sql)
    return _STATEMENTS[key]


async def _linked_postgres(
    conn: AsyncConnection,
    parent: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict: tuple[str, ...],
    linked: Sequence[Linked],
) -> tuple[set[Any], list[dict[Any, Any]]]:
    names = _names(rows)
    shaped = [(link, _names(link.rows) if link.rows else (link.key,)) for link in linked]
    params = _json_arrays(parent, rows, names, "p_")
    for i, (link, columns) in enumerate(shaped):
        params |= _json_arrays(link.table, link.rows, columns, f"l{i}_")
    statement = _linked_statement(conn.dialect, parent, names, conflict, shaped)
    answered = (await conn.execute(statement, params)).all()
    inserted = {row[0] for row in answered}
    returned: list[dict[Any, Any]] = [{} for link in linked if link.returning]
    for row in answered:
        for j, value in enumerate(row[1:]):
            if value is not None:
                returned[j][row[0]] = value
    return inserted, returned


async def _linked_each(
    conn: AsyncConnection,
    parent: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict: tuple[str, ...],
    linked: Sequence[Linked],
) -> tuple[set[Any], list[dict[Any, Any]]]:
    first = sqlite.insert(parent).on_conflict_do_nothing(index_elements=list(conflict))
    inserted = set((await conn.execute(first.returning(parent.c.id), list(rows))).scalars())
    returned: list[dict[Any, Any]] = []
    for link in linked:
        mine = [r for r in link.rows if r[link.key] in inserted]
        if not link.returning:
            await insert_rows(conn, link.table, mine)
            continue
        found: dict[Any, Any] = {}
        if mine:
            statement = insert(link.table).returning(
                link.table.c[link.returning], sort_by_parameter_order=True
            )
            values = (await conn.execute(statement, mine)).scalars()
            found = {r[link.key]: v for r, v in zip(mine, values, strict=True)}
        returned.append(found)
    return inserted, returned
