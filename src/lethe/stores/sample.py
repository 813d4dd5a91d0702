"""Bounded, read-only samples of a SQL table's text columns (for `lethe scan`).

The sample is the first N rows the database hands out, fetched through a cursor that
is closed after N: the same statement on SQLite and PostgreSQL (no `TABLESAMPLE`,
whose support and meaning differ), and it never asks the server to sort or count the
table. On PostgreSQL it runs in a READ ONLY transaction; on SQLite with `query_only`.
Values go back to the caller only, never into a message or an error.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from lethe.errors import StoreError
from lethe.stores.sql import SqlStore, describe_db_error

_TEXTUAL = (sa.String, sa.JSON, sa.types.NullType, postgresql.INET, postgresql.CIDR,
            postgresql.MACADDR)


def text_columns(store: SqlStore, table: str) -> list[str]:
    """Columns whose values can be text: strings, JSON, network addresses, untyped."""
    t = store.table(table)
    return [str(c.name) for c in t.columns if isinstance(c.type, _TEXTUAL)]  # not quoted_name


def as_text(value: Any) -> str | None:
    """A sampled value as the text a detector reads (None for anything else)."""
    if isinstance(value, str):
        return value
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address |
                  ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return None


@contextmanager
def _read_only(store: SqlStore, what: str) -> Iterator[Connection]:
    try:
        with store.engine.connect() as conn:
            if store.dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = 1")
                conn.commit()
            try:
                with conn.begin():
                    if store.dialect == "postgresql":
                        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    yield conn
            finally:
                if store.dialect == "sqlite":
                    conn.exec_driver_sql("PRAGMA query_only = 0")
                    conn.commit()
    except DBAPIError as exc:
        raise StoreError(describe_db_error(exc, what), path=f"stores.{store.name}") from None
    except SQLAlchemyError as exc:
        raise StoreError(f"{what}: {type(exc).__name__}", path=f"stores.{store.name}") from None


def sample_columns(store: SqlStore, table: str, columns: Sequence[str],
                   limit: int) -> list[tuple[Any, ...]]:
    """Up to `limit` rows of `columns` (names from the live schema, quoted by the
    dialect). No filter on NULLs: skipping them could walk a whole sparse table, and
    the cost of a scan must stay that of reading `limit` rows."""
    t = store.table(table)
    query = sa.select(*(t.c[name] for name in columns))
    with _read_only(store, f"sampling {table}") as conn:
        result = conn.execution_options(stream_results=True, yield_per=min(limit, 1000)) \
            .execute(query)
        try:
            return [tuple(row) for row in result.fetchmany(limit)]
        finally:
            result.close()
