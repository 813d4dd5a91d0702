"""Transactions on the control store, and reading its times back as UTC."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

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


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were written as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
