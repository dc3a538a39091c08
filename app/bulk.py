"""Rows written in bulk: many rows of one table in a few statements, whatever their number.

The ORM builds an object per row and the driver parses one huge multi-row INSERT per
thousand rows; for the tables a match run or the demo loader fills by the thousand
(bookings, order events, unmatched lines, windows, state spans) that is most of the time
they take. Here rows are plain dicts: their Python-side column defaults filled in, new
primary keys taken ahead from the table's sequence (PostgreSQL) or after the highest id
under the write lock the caller already holds (SQLite), and written with COPY on
PostgreSQL or one ``executemany`` on SQLite. The caller's transaction is used: a rollback
takes the rows back like any other write.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Table, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel


def insert_rows(
    session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]], *, ids: bool = False
) -> list[int]:
    """Insert ``rows`` into ``model``'s table; with ``ids``, return their new primary keys
    in the order of ``rows`` (rows that carry an ``id`` keep it)."""
    if not rows:
        return []
    table: Table = model.__table__  # type: ignore[attr-defined]
    connection = session.connection()
    filled = _with_defaults(table, rows)
    new_ids: list[int] = []
    if ids or connection.dialect.name == "sqlite":
        new_ids = _take_ids(session, table, len(filled))
        for row, i in zip(filled, new_ids, strict=True):
            row["id"] = i
    if connection.dialect.name == "postgresql":
        names = list(filled[0])
        raw = connection.connection.dbapi_connection
        assert raw is not None
        json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
        columns = ", ".join(f'"{n}"' for n in names)
        statement = f'COPY "{table.name}" ({columns}) FROM STDIN'
        try:
            with raw.cursor() as cursor:  # type: ignore[attr-defined]
                with cursor.copy(statement) as copy:
                    for row in filled:
                        copy.write_row(
                            [Jsonb(row[n]) if n in json_columns else row[n] for n in names]
                        )
        except psycopg.errors.IntegrityError as exc:  # as SQLAlchemy says it for an INSERT
            raise IntegrityError(statement, None, exc) from exc
    else:
        connection.execute(insert(table), filled)
    return new_ids


def _with_defaults(table: Table, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with every column that has a Python-side default and is missing, set."""
    missing = [
        c
        for c in table.columns
        if c.default is not None and not c.primary_key and c.name not in rows[0]
    ]
    out = []
    for row in rows:
        full = dict(row)
        for c in missing:
            default: Any = c.default
            full[c.name] = default.arg(None) if default.is_callable else default.arg
        for name, value in full.items():  # a state column takes its value, not the member
            if isinstance(value, Enum):
                full[name] = value.value
        out.append(full)
    return out


def _take_ids(session: Session, table: Table, n: int) -> list[int]:
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        sequence = connection.execute(
            text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name}
        ).scalar_one()
        got = connection.execute(
            text("SELECT nextval(:s) FROM generate_series(1, :n)"), {"s": sequence, "n": n}
        ).all()
        return [row[0] for row in got]
    # SQLite: this transaction holds the database's one write lock (begin_write)
    first = (connection.execute(select(func.max(table.c.id))).scalar() or 0) + 1
    return list(range(first, first + n))
