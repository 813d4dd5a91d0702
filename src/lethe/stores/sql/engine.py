"""Opening a SQL database, and saying what went wrong without repeating its data.

Everything that touches a SQLAlchemy engine starts here: the URL normalised to the
psycopg 3 driver, SQLite's transactions taken by SQLAlchemy rather than pysqlite, and
driver errors turned into one-line `StoreError`s that name no row value. lethe's own
control store opens its engine through this module too, which is why these are plain
functions and not methods of `SqlStore`.

`SqlBase` is the state every part of `SqlStore` shares (the engine, its dialect, the
caches), so the parts in the sibling modules can be written as small mixins over it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from lethe.errors import StoreError
from lethe.stores.base import TableInfo
from lethe.stores.sql.arrays import register_dumper
from lethe.stores.sql.blocks import BlockSpan, Pruner
from lethe.stores.sql.walwriter import LogWriterNudge
from lethe.stores.sql.windows import KeySpan


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def sqlite_busy_timeout() -> float:
    """Seconds a SQLite connection waits for another process's write lock (default 30;
    LETHE_SQLITE_BUSY_TIMEOUT overrides it)."""
    try:
        return max(float(os.environ.get("LETHE_SQLITE_BUSY_TIMEOUT", "30")), 0.0)
    except ValueError:
        return 30.0


def create_sql_engine(url: str, *, wal: bool = False, existing: bool = False) -> Engine:
    """`wal`: put a SQLite file in WAL mode (only for lethe's own control store: an
    application's database keeps the journal mode its owners chose). `existing`: open a
    SQLite file only if it is there (read-write, never created): a mistyped path to an
    application's database must be an error, not a new empty database."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        busy = sqlite_busy_timeout()
        target: str | sa.URL = sqlite_existing_only(url) if existing else url
        engine = sa.create_engine(target, connect_args={"timeout": busy})

        @event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide where transactions begin.
            dbapi_connection.isolation_level = None
            dbapi_connection.execute(f"PRAGMA busy_timeout = {int(busy * 1000)}")
            # Foreign keys enforced as on PostgreSQL: a reference lethe's reading of the
            # schema missed fails the batch instead of leaving rows pointing at nothing.
            dbapi_connection.execute("PRAGMA foreign_keys = ON")
            if wal and ":memory:" not in url:
                dbapi_connection.execute("PRAGMA journal_mode = WAL")

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            # Writers take the write lock up front: upgrading later can fail with SQLITE_BUSY.
            immediate = connection.get_execution_options().get("lethe_write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    engine = sa.create_engine(url)
    _ping_when_rested(engine)
    if engine.dialect.name == "postgresql":
        _without_jit(engine)
    return engine


def _without_jit(engine: Engine) -> None:
    """No JIT compilation on lethe's PostgreSQL connections. A batch is a short
    statement; a rule whose condition the planner costs high (a lookup per row in a
    parent) crossed `jit_above_cost` and each batch then spent ~10 ms compiling
    expressions it evaluated for a few milliseconds."""

    @event.listens_for(engine, "connect")
    def _no_jit(dbapi_connection: Any, _record: Any) -> None:
        if engine.dialect.driver == "psycopg":  # periods from data go as binary arrays
            register_dumper(dbapi_connection)
        with dbapi_connection.cursor() as cursor:  # (a server without JIT: nothing to do)
            cursor.execute("SELECT set_config('jit', 'off', false)"
                           " WHERE current_setting('jit', true) IS NOT NULL")
        dbapi_connection.commit()


PING_AFTER_IDLE = 1.0  # seconds a pooled connection may rest before it is pinged


def _ping_when_rested(engine: Engine) -> None:
    """Ping a pooled connection at checkout only if it rested in the pool for more than
    PING_AFTER_IDLE seconds (SQLAlchemy's checkout-event recipe; `pool_pre_ping` pings
    every time). A sweep checks a connection out for every batch, milliseconds after the
    last: a ping each time was one more round trip a batch. A server restarted since the
    last use is caught as before; one restarted within the second fails the statement,
    and SQLAlchemy then discards the whole pool."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _rest(_dbapi_connection: Any, record: Any) -> None:
        record.info["rested_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("rested_since", 0.0) <= PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the driver's own error class: the pool reconnects
            raise sa.exc.DisconnectionError(type(exc).__name__) from exc


def describe_db_error(exc: SQLAlchemyError, what: str) -> str:
    """A one-line description that never repeats row values from the driver message."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        diag = getattr(orig, "diag", None)
        primary = getattr(diag, "message_primary", None) or ""
        # Classes 22 (data exceptions) echo the offending value: keep only the code.
        detail = primary if sqlstate[:2] in {"23", "40", "42", "53", "55", "57", "08"} else ""
        return f"{what}: database error {sqlstate} {detail}".rstrip()
    if orig is not None and "database is locked" in str(orig):
        return (f"{what}: the database is locked by another process "
                f"(waited {sqlite_busy_timeout():g} s for its write lock)")
    if orig is not None:
        return f"{what}: {type(orig).__name__}: {str(orig).splitlines()[0]}"
    return f"{what}: {type(exc).__name__}"


class SqlBase:
    """One SQLAlchemy engine and the state the parts of `SqlStore` share."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        missing = sqlite_file(url)
        if missing is not None and not Path(missing).exists():
            raise StoreError(f"the SQLite database file {Path(missing).absolute()} does not "
                             "exist; lethe opens an application's database, it never "
                             "creates one", path=f"stores.{name}.url")
        try:
            self.engine = create_sql_engine(url, existing=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open store: {type(exc).__name__}",
                             path=f"stores.{name}") from None
        self.dialect = self.engine.dialect.name
        self._doubles_percent = "%%" in str(self.engine.dialect.identifier_preparer.quote("%"))
        # .xid, .started: the last batch committed without a flush, the server's start
        self._unflushed = threading.local()
        self._metadata = sa.MetaData()
        self._reflecting = threading.Lock()  # the API reads on many threads at once
        self._tables: dict[str, TableInfo] | None = None
        self._inspector: Any = None  # the one that read `_tables`
        self._spans: dict[str, KeySpan | None] = {}
        self._blocks: dict[str, BlockSpan | None] = {}
        self._pruners: dict[str, Pruner] = {}  # per table: the block walk going on
        self._nudge: LogWriterNudge | None = None  # wakes the WAL writer during page walks
        self._widths: dict[str, int] = {}  # the next batch's width, in keys or pages
        self._aims: dict[str, int] = {}  # the rows a page walk's next batch aims at
        # statements built once per shape, run again with new values (compile.Compiler.shaped)
        self._statements: dict[tuple[Any, ...], sa.Executable] = {}
        self._removed: dict[str, int] = {}  # rows this store deleted, per table
        self._millis: dict[tuple[str, str], bool] = {}
        self._estimates: dict[str, int] = {}

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            raise StoreError(describe_db_error(exc, what), path=f"stores.{self.name}") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"{what}: {type(exc).__name__}", path=f"stores.{self.name}") from None

    @contextmanager
    def _reading(self, what: str) -> Iterator[Connection]:
        """A connection for one read statement (its own snapshot). On PostgreSQL it runs
        outside a transaction: a read in one ends in ROLLBACK, and psycopg forgets every
        statement it had prepared on a connection that sees a ROLLBACK (a rollback may
        have undone what they name), so an erasure's statements, run once per subject,
        were parsed and planned afresh each time (0.36 ms against 0.15 ms prepared, for
        a delete of one subject's rows). It also saves the BEGIN and ROLLBACK round
        trips."""
        with self._errors(what), self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def _quoted(self, name: str) -> str:
        """The identifier as PostgreSQL spells it (quoted where needed), for SQL text and
        bound values. SQLAlchemy's quoting also doubles `%` for the driver's paramstyle;
        undone here, because `sa.text` doubles it again and `VERBATIM` SQL is sent as is
        (a name with `%` otherwise named another relation, or none)."""
        quoted = str(self.engine.dialect.identifier_preparer.quote(name))
        return quoted.replace("%%", "%") if self._doubles_percent else quoted

    def close(self) -> None:
        for pruner in self._pruners.values():  # walks left unfinished (a failed run)
            pruner.finish()
        self._pruners.clear()
        self._stop_nudging()
        self.engine.dispose()

    def _stop_nudging(self) -> None:
        """End the thread that wakes the WAL writer during page walks (walwriter.py)."""
        nudge, self._nudge = self._nudge, None
        if nudge is not None:
            nudge.stop()


def sqlite_file(url: str) -> str | None:
    """The file a SQLite URL opens, as written (None: in memory, or not SQLite)."""
    if in_memory_sqlite(url) or not normalize_url(url).startswith("sqlite"):
        return None
    database = make_url(url).database or ""
    if database.startswith("file:"):  # a URI filename: its own query, %-escapes
        return unquote(database.removeprefix("file:").split("?", 1)[0]) or None
    return database or None


def sqlite_existing_only(url: str) -> sa.URL:
    """The URL opening its SQLite file read-write without creating it (SQLite's URI
    filename with `mode=rw`, which SQLAlchemy passes through with `uri=true`)."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.query.get("uri") == "true" or in_memory_sqlite(url):
        return parsed  # the owner wrote a URI filename: their mode stands
    return parsed.set(database="file:" + quote(database),
                      query={**parsed.query, "mode": "rw", "uri": "true"})


def in_memory_sqlite(url: str) -> bool:
    """Does this URL open an in-memory SQLite database (`sqlite://`, `sqlite:///`,
    `sqlite:///:memory:`, `file::memory:`, `mode=memory`)?"""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    if not parsed.drivername.startswith("sqlite"):
        return False
    database = parsed.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:") \
        or "mode=memory" in database or parsed.query.get("mode") == "memory"
