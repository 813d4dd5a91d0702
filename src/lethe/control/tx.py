"""Transactions on the control store, and reading its times back as UTC."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from lethe.errors import StoreError
from lethe.stores.sql import describe_db_error


@contextmanager
def transaction(engine: Engine, what: str, *, write: bool = True) -> Iterator[Connection]:
    """One transaction; `write` takes SQLite's write lock up front. Errors name `what`."""
    try:
        with engine.connect().execution_options(lethe_write=write) as conn, conn.begin():
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(describe_db_error(exc, what), path="control") from None


@contextmanager
def joined(engine: Engine, conn: Connection | None, what: str) -> Iterator[Connection]:
    """The caller's open transaction when it passes one (the work commits, or not, with
    the rest of it); otherwise a write transaction of its own."""
    if conn is not None:
        yield conn
        return
    with transaction(engine, what) as own:
        yield own


def insert_many(conn: Connection, table: sa.Table, rows: Sequence[Sequence[Any]]) -> None:
    """Rows of plain text and numbers (one value per column of `table`, in its order)
    handed to the driver's executemany as they are. A bulk run writes 15 such rows a
    subject (audit entries, baselines); SQLAlchemy's executemany processed every
    parameter of every row on the way, a tenth of the run's Python."""
    if not rows:
        return
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    if mark is None:  # a driver that takes parameters otherwise: SQLAlchemy's way
        names = [c.name for c in table.columns]
        conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in rows])
        return
    quote = conn.dialect.identifier_preparer
    conn.exec_driver_sql(
        f"INSERT INTO {quote.format_table(table)}"
        f" ({', '.join(quote.quote(c.name) for c in table.columns)})"
        f" VALUES ({', '.join([mark] * len(table.columns))})", list(rows))


def update_many(conn: Connection, table: sa.Table, key: str, names: Sequence[str],
                rows: Sequence[Sequence[Any]]) -> None:
    """`UPDATE table SET names... WHERE key = ?` for each row (its values in `names`'
    order, then the key), through the driver's executemany; each value passed through
    its column type's bind processing (SQLite's datetimes as text), once, as SQLAlchemy
    would. A bulk run moves every request twice; SQLAlchemy's executemany spent more
    on those parameters than SQLite on the UPDATEs."""
    if not rows:
        return
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    if mark is None:  # a driver that takes parameters otherwise: SQLAlchemy's way
        statement = table.update().where(table.c[key] == sa.bindparam("lethe_key")) \
            .values({n: sa.bindparam(f"v_{n}") for n in names})
        conn.execute(statement, [{"lethe_key": row[-1], **{f"v_{n}": v for n, v in zip(
            names, row[:-1], strict=True)}} for row in rows])
        return
    processors = [table.c[n].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
                  for n in names]
    quote = conn.dialect.identifier_preparer

    def bound(row: Sequence[Any]) -> tuple[Any, ...]:
        *values, row_key = row
        return (*(value if process is None or value is None else process(value)
                  for process, value in zip(processors, values, strict=True)), row_key)

    conn.exec_driver_sql(
        f"UPDATE {quote.format_table(table)} SET "
        f"{', '.join(f'{quote.quote(n)} = {mark}' for n in names)}"
        f" WHERE {quote.quote(key)} = {mark}", [bound(row) for row in rows])


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were written as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
