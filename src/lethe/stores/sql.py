"""SQLite and PostgreSQL through SQLAlchemy Core.

Names come from the reflected schema (so they are real and get quoted by the
dialect); values are always bound parameters. Batches walk the key in order:
each one picks the next `limit` matching keys after the previous batch's last
key and applies the effect to that key window in one short transaction, so no
batch re-walks rows an earlier batch already removed.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, NoSuchTableError, SQLAlchemyError

from lethe.errors import SchemaMismatch, StoreError
from lethe.stores.base import (
    FALSE,
    And,
    Anonymize,
    Archive,
    BatchResult,
    Cascade,
    ColumnInfo,
    Condition,
    Const,
    Delete,
    Differs,
    Effect,
    Eq,
    Exists,
    ForeignKey,
    In,
    IsNull,
    Not,
    NotLike,
    Older,
    Or,
    Partition,
    PartitionDrops,
    SetColumns,
    Sweep,
    TableInfo,
    Value,
)
from lethe.stores.sql_values import (
    MILLIS_THRESHOLD,
    UNCOERCIBLE,
    bind_time,
    coerce,
    coerce_each,
    earliest,
    from_archive,
    is_numeric,
    older,
    python_type,
)
from lethe.stores.windows import KeySpan, is_dense, next_width

ARRAY_AFTER = 16  # longer IN lists go as one parameter: an array (PostgreSQL), JSON (SQLite)
# SQL sent as written: without parameters the driver must not read `%` in a name as one
VERBATIM: dict[str, Any] = {"no_parameters": True}
PARTITION_LOCK_TIMEOUT = "5s"  # how long a DETACH may wait for the parent's lock
_RANGE_UPPER = re.compile(r"TO \((.+)\)\s*$")  # a range partition's upper bound


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_sql_engine(url: str, *, wal: bool = False) -> Engine:
    """`wal`: put a SQLite file in WAL mode (only for lethe's own control store: an
    application's database keeps the journal mode its owners chose)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide where transactions begin.
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA busy_timeout = 30000")
            if wal and ":memory:" not in url:
                dbapi_connection.execute("PRAGMA journal_mode = WAL")

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            # Writers take the write lock up front: upgrading later can fail with SQLITE_BUSY.
            immediate = connection.get_execution_options().get("lethe_write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


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
    if orig is not None:
        return f"{what}: {type(orig).__name__}: {str(orig).splitlines()[0]}"
    return f"{what}: {type(exc).__name__}"


class SqlStore:
    """A RowStore over one SQLAlchemy engine."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        try:
            self.engine = create_sql_engine(url)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open store: {type(exc).__name__}",
                             path=f"stores.{name}") from None
        self.dialect = self.engine.dialect.name
        self._doubles_percent = "%%" in str(self.engine.dialect.identifier_preparer.quote("%"))
        self._unflushed = threading.local()  # .xid: the last batch committed without a flush
        self._metadata = sa.MetaData()
        self._reflecting = threading.Lock()  # the API reads on many threads at once
        self._tables: dict[str, TableInfo] | None = None
        self._spans: dict[str, KeySpan | None] = {}
        self._widths: dict[str, int] = {}
        self._removed: dict[str, int] = {}  # rows this store deleted, per table
        self._millis: dict[tuple[str, str], bool] = {}
        self._estimates: dict[str, int] = {}

    # -- schema -------------------------------------------------------------------------
    def tables(self) -> Mapping[str, TableInfo]:
        if self._tables is None:
            with self._errors("reading the schema"):
                inspector = sa.inspect(self.engine)
                parts = self._partition_names()
                self._tables = {name: self._describe(inspector, name)
                                for name in inspector.get_table_names() if name not in parts}
        return self._tables

    @staticmethod
    def _describe(inspector: Any, name: str) -> TableInfo:
        columns = {c["name"]: ColumnInfo(c["name"], str(c["type"]), bool(c["nullable"]))
                   for c in inspector.get_columns(name)}
        pk = tuple(inspector.get_pk_constraint(name).get("constrained_columns") or ())
        fks = tuple(ForeignKey(tuple(fk["constrained_columns"]), fk["referred_table"],
                               tuple(fk["referred_columns"]))
                    for fk in inspector.get_foreign_keys(name))
        indexes = inspector.get_indexes(name)
        indexed = [tuple(str(c) for c in ix["column_names"] if c is not None) for ix in indexes]
        uniques = [tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)]
        unique = [tuple(str(c) for c in ix["column_names"] if c is not None)
                  for ix in indexes if ix.get("unique")] + uniques
        if pk:
            indexed.append(pk)
            unique.append(pk)
        return TableInfo(name, columns, pk, fks, tuple(indexed + uniques), tuple(unique))

    def table(self, name: str) -> sa.Table:
        found = self._metadata.tables.get(name)
        if found is not None:
            return found
        with self._reflecting:  # one thread reflects; the others wait and reuse it
            if name not in self._metadata.tables:
                if name not in self.tables():
                    raise SchemaMismatch(f"table {name!r} does not exist",
                                         path=f"stores.{self.name}")
                try:
                    sa.Table(name, self._metadata, autoload_with=self.engine)
                except NoSuchTableError:
                    raise SchemaMismatch(f"table {name!r} does not exist",
                                         path=f"stores.{self.name}") from None
            return self._metadata.tables[name]

    def column(self, table: sa.FromClause, name: str, table_name: str) -> sa.ColumnElement[Any]:
        try:
            return table.c[name]
        except KeyError:
            raise SchemaMismatch(f"column {name!r} does not exist in table {table_name!r}",
                                 path=f"stores.{self.name}") from None

    # -- conditions ---------------------------------------------------------------------
    def compile(self, cond: Condition, table_name: str,
                table: sa.FromClause | None = None) -> sa.ColumnElement[bool]:
        """Turn a condition tree into a SQLAlchemy expression on `table` (bound values)."""
        t = table if table is not None else self.table(table_name)

        def col(name: str) -> sa.ColumnElement[Any]:
            return self.column(t, name, table_name)

        match cond:
            case Const(value):
                return sa.true() if value else sa.false()
            case Eq(column, value):
                c = col(column)
                if value is None:
                    return c.is_(None)
                bound = coerce(c, value, self.dialect)
                return sa.false() if bound is UNCOERCIBLE else sa.and_(c.is_not(None), c == bound)
            case In(column, values):
                c = col(column)
                bound_values = coerce_each(c, values, self.dialect)
                parts = []
                if bound_values:
                    parts.append(sa.and_(c.is_not(None), self._in(c, bound_values)))
                if any(v is None for v in values):
                    parts.append(c.is_(None))
                return sa.or_(*parts) if parts else sa.false()
            case IsNull(column):
                return col(column).is_(None)
            case Differs(column, value):
                c = col(column)
                bound = coerce(c, value, self.dialect)
                if bound is UNCOERCIBLE:
                    return c.is_not(None)
                return sa.and_(c.is_not(None), c != bound)
            case NotLike(column, pattern):
                c = col(column)
                return sa.and_(c.is_not(None), sa.not_(sa.cast(c, sa.String).like(pattern)))
            case Older(column, cutoff):
                c = col(column)
                return sa.and_(c.is_not(None), self._older(c, cutoff))
            case And(parts):
                return sa.and_(*(self.compile(p, table_name, t) for p in parts))
            case Or(parts):
                return sa.or_(*(self.compile(p, table_name, t) for p in parts))
            case Not(part):
                return sa.not_(self.compile(part, table_name, t))
            case Exists(other, inner, outer, where, _store):
                o = self.table(other).alias()
                link = self.column(o, inner, other) == col(outer)
                return sa.exists().where(link, self.compile(where, other, o))
        raise TypeError(f"unknown condition {type(cond).__name__}")

    def _in(self, c: sa.ColumnElement[Any], values: list[Any]) -> sa.ColumnElement[bool]:
        """`IN (...)`; on PostgreSQL a long list is one array parameter (`= ANY(:a)`), so
        the driver neither rewrites nor re-plans a statement per list length."""
        if self.dialect == "postgresql" and len(values) > ARRAY_AFTER:
            return c == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(c.type)))
        if self.dialect == "sqlite" and len(values) > ARRAY_AFTER and all(
                type(v) in (int, str) for v in values):
            # One JSON parameter read as a table (SQLite's bound array): a list of
            # thousands of held keys neither hits the variable limit nor deepens the
            # expression tree, and SQLite builds one lookup index for the IN.
            listed = sa.func.json_each(sa.bindparam(None, json.dumps(values), sa.String))
            return c.in_(sa.select(listed.table_valued("value").c.value))
        return c.in_(values)

    def _older(self, c: sa.ColumnElement[Any], cutoff: datetime) -> sa.ColumnElement[bool]:
        # SQLite decides seconds or milliseconds per value, in SQL
        millis = self.dialect != "sqlite" and self._in_millis(c)
        return older(c, cutoff, self.dialect, millis=millis)

    def _in_millis(self, c: sa.ColumnElement[Any]) -> bool:
        """Does this integer time column count milliseconds? Judged once from its values."""
        if not is_numeric(c) or not isinstance(c, sa.Column):
            return False
        name = (c.table.name, c.name)
        if name not in self._millis:
            with self._errors("reading a time column"), self.engine.connect() as conn:
                top = conn.execute(sa.select(sa.func.max(c))).scalar()
            self._millis[name] = top is not None and abs(top) > MILLIS_THRESHOLD
        return self._millis[name]

    # -- reads and writes ---------------------------------------------------------------
    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            raise StoreError(describe_db_error(exc, what), path=f"stores.{self.name}") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"{what}: {type(exc).__name__}", path=f"stores.{self.name}") from None

    def count(self, table: str, where: Condition) -> int:
        t = self.table(table)
        query = sa.select(sa.func.count()).select_from(t).where(self.compile(where, table))
        with self._errors(f"counting rows of {table}"), self.engine.connect() as conn, \
                conn.begin():
            if self._mostly_dead_index(conn, table):
                # Right after a mass delete every index entry of a removed row is still
                # there until VACUUM; walking them costs ~5x a sequential scan.
                conn.execute(sa.text("SET LOCAL enable_indexscan = off"))
                conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
            return int(conn.execute(query).scalar_one())

    def select_settled(self, table: str, columns: Sequence[str],
                       where: Condition) -> list[tuple[Any, ...]]:
        t = self.table(table)
        query = sa.select(*(self.column(t, c, table) for c in columns)).where(
            self.compile(where, table))
        if self.dialect == "postgresql":
            query = query.with_for_update(of=t)  # blocks while a batch holds these rows
        with self._errors(f"reading rows of {table}"), \
                self.engine.connect().execution_options(lethe_write=True) as conn, \
                conn.begin():
            return [tuple(row) for row in conn.execute(query)]

    def rows(self, table: str, where: Condition) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        t = self.table(table)
        query = sa.select(t).where(self.compile(where, table))
        if t.primary_key.columns:
            query = query.order_by(*t.primary_key.columns)
        with self._errors(f"reading rows of {table}"), self.engine.connect() as conn:
            result = conn.execute(query)
            return tuple(result.keys()), [tuple(r) for r in result]

    def values(self, table: str, column: str, where: Condition) -> list[Any]:
        t = self.table(table)
        c = self.column(t, column, table)
        query = sa.select(c).distinct().where(c.is_not(None), self.compile(where, table))
        with self._errors(f"reading links of {table}"), self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def select(self, table: str, columns: Sequence[str],
               where: Condition) -> list[tuple[Any, ...]]:
        t = self.table(table)
        query = sa.select(*(self.column(t, c, table) for c in columns)) \
            .where(self.compile(where, table))
        with self._errors(f"reading rows of {table}"), self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(query)]

    def count_by(self, table: str, column: str, where: Condition) -> dict[Value, int]:
        t = self.table(table)
        c = self.column(t, column, table)
        query = sa.select(c, sa.func.count()).where(c.is_not(None), self.compile(where, table)) \
            .group_by(c)
        with self._errors(f"counting rows of {table}"), self.engine.connect() as conn:
            return {value: int(n) for value, n in conn.execute(query)}

    def oldest(self, table: str, column: str, where: Condition) -> datetime | None:
        t = self.table(table)
        c = self.column(t, column, table)
        millis = self.dialect != "sqlite" and self._in_millis(c)
        minimum, as_instant = earliest(c, self.dialect, millis=millis)
        query = sa.select(minimum).select_from(t).where(c.is_not(None),
                                                       self.compile(where, table))
        with self._errors(f"reading the oldest {column} of {table}"), \
                self.engine.connect() as conn:
            return as_instant(conn.execute(query).scalar())

    def _partition_names(self) -> set[str]:
        """Partitions are part of their parent table, not tables of their own."""
        if self.dialect != "postgresql":
            return set()
        with self.engine.connect() as conn:
            return set(conn.execute(sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relispartition AND n.nspname = current_schema()")).scalars())

    def partitions(self, table: str, column: str) -> list[Partition]:
        if self.dialect != "postgresql":
            return []
        with self._errors(f"reading the partitions of {table}"), self.engine.connect() as conn:
            keydef = conn.execute(sa.text(
                "SELECT pg_get_partkeydef(c.oid) FROM pg_class c "
                "WHERE c.oid = to_regclass(:t) AND c.relkind = 'p'"),
                {"t": self._quoted(table)}).scalar()
            if keydef is None or keydef != f"RANGE ({self._quoted(column)})":
                return []
            rows = conn.execute(sa.text(  # partitions in the parent's schema only
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                "WHERE i.inhparent = to_regclass(:t) AND c.relnamespace = p.relnamespace "
                "ORDER BY c.relname"), {"t": self._quoted(table)}).all()
            found = []
            for name, bound in rows:
                upper = _RANGE_UPPER.search(bound or "")
                literal = upper.group(1).strip("'") if upper else "MAXVALUE"
                moment: datetime | None = None
                if literal != "MAXVALUE":
                    try:
                        moment = datetime.fromisoformat(literal)
                    except ValueError:
                        moment = None  # a bound we cannot read is never taken as expired
                    if moment is not None and moment.tzinfo is None:
                        moment = None  # a timestamp without time zone: not comparable here
                found.append(Partition(str(name), moment))
        return found

    def _quoted(self, name: str) -> str:
        """The identifier as PostgreSQL spells it (quoted where needed), for SQL text and
        bound values. SQLAlchemy's quoting also doubles `%` for the driver's paramstyle;
        undone here, because `sa.text` doubles it again and `VERBATIM` SQL is sent as is
        (a name with `%` otherwise named another relation, or none)."""
        quoted = str(self.engine.dialect.identifier_preparer.quote(name))
        return quoted.replace("%%", "%") if self._doubles_percent else quoted

    def _partition(self, table: str, partition: str) -> sa.Table:
        """A partition as a table with its parent's columns (partitions are not listed
        among the store's tables)."""
        return sa.Table(partition, sa.MetaData(), *(
            sa.Column(c.name, c.type) for c in self.table(table).columns))

    def count_in_partition(self, table: str, partition: str, where: Condition) -> int:
        part = self._partition(table, partition)
        with self._errors(f"counting rows of {table}"), self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(part)
                                    .where(self.compile(where, table, part))).scalar_one())

    def drop_partitions(self, table: str, partitions: Sequence[str],
                        held: Callable[[], Condition], *,
                        estimate: bool = False) -> PartitionDrops:
        dropped: dict[str, tuple[int, bool]] = {}
        what = f"dropping a partition of {table}"
        stopped = None
        try:
            with self._errors(what), \
                    self.engine.connect().execution_options(lethe_write=True) as conn:
                estimates: dict[str, int] = {}
                if estimate:  # the planner's figures, read once (a detach leaves them)
                    with conn.begin():
                        estimates = self._planner_rows(conn, partitions)
                for name in partitions:  # a short transaction each: the parent's lock is brief
                    with conn.begin():
                        outcome = self._drop_partition(conn, table, name, held,
                                                       estimates.get(name))
                    if outcome is not None:
                        dropped[name] = outcome
        except StoreError as exc:  # e.g. the lock was not granted in time
            stopped = exc.message  # names no value (describe_db_error)
        self._removed[table] = self._removed.get(table, 0) + sum(
            rows for rows, _ in dropped.values())
        return PartitionDrops(dropped, stopped)

    def _planner_rows(self, conn: sa.Connection, partitions: Sequence[str]) -> dict[str, int]:
        """The planner's row figures (`reltuples`) of these partitions; a partition never
        analyzed (-1) has none."""
        found = conn.execute(sa.text(
            "SELECT p, reltuples::bigint FROM unnest(CAST(:ps AS text[])) AS p "
            "JOIN pg_class ON pg_class.oid = to_regclass(p)"),
            {"ps": [self._quoted(name) for name in partitions]}).all()
        by_quoted = {self._quoted(name): name for name in partitions}
        return {by_quoted[p]: int(rows) for p, rows in found if rows is not None and rows >= 0}

    def _detached(self, conn: sa.Connection, table: str, name: str,
                  held: Callable[[], Condition]) -> bool:
        """Detach the partition (waiting at most the lock timeout: never queue for long
        behind the application's queries on the parent), then read the holds: one
        placed while the DETACH waited is seen. False when a held row is inside."""
        part = self._partition(table, name)
        conn.exec_driver_sql(  # one round trip; names are quoted, nothing is bound
            f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'; "
            f"ALTER TABLE {self._quoted(table)} DETACH PARTITION {self._quoted(name)}",
            execution_options=VERBATIM)
        holds = held()
        return holds == FALSE or conn.execute(
            sa.select(sa.literal(1)).select_from(part)
            .where(self.compile(holds, table, part)).limit(1)).first() is None

    def _drop_partition(self, conn: sa.Connection, table: str, name: str,
                        held: Callable[[], Condition],
                        estimate: int | None) -> tuple[int, bool] | None:
        """Inside the caller's transaction: detach, check the holds, count (or take the
        planner's `estimate`), drop. None (and rolled back) when a held row is inside."""
        if not self._detached(conn, table, name, held):
            conn.rollback()
            return None
        rows = estimate if estimate is not None else int(conn.execute(
            sa.select(sa.func.count()).select_from(self._partition(table, name))).scalar_one())
        conn.exec_driver_sql(f"DROP TABLE {self._quoted(name)}", execution_options=VERBATIM)
        return rows, estimate is not None

    def archive_partition(self, table: str, partition: str, held: Callable[[], Condition],
                          write: Callable[[tuple[str, ...], list[tuple[Any, ...]]], None],
                          chunk_rows: int) -> int | None:
        part, child = self._partition(table, partition), self._quoted(partition)
        rows = 0
        with self._errors(f"archiving a partition of {table}"), \
                self.engine.connect().execution_options(lethe_write=True) as conn, \
                conn.begin():
            conn.execute(sa.text(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'"))
            # Reads go on; writes to this partition, and another archiver or a settling
            # run, wait until the rows are archived and the partition dropped, or not.
            conn.execute(sa.text(f"LOCK TABLE {child} IN EXCLUSIVE MODE"))
            holds = held()
            if holds != FALSE and conn.execute(
                    sa.select(sa.literal(1)).select_from(part)
                    .where(self.compile(holds, table, part)).limit(1)).first():
                conn.rollback()
                return None
            result = conn.execute(sa.select(part).execution_options(  # a server-side cursor
                stream_results=True, yield_per=chunk_rows))
            columns = tuple(result.keys())
            for chunk in result.partitions(chunk_rows):
                write(columns, [tuple(r) for r in chunk])  # stored and verified, or raises
                rows += len(chunk)
            if not self._detached(conn, table, partition, held):
                conn.rollback()
                return None
            conn.execute(sa.text(f"DROP TABLE {child}"))
        self._removed[table] = self._removed.get(table, 0) + rows
        return rows

    def count_in_partition_settled(self, table: str, partition: str, where: Condition) -> int:
        part = self._partition(table, partition)
        with self._errors(f"counting rows of {table}"), \
                self.engine.connect().execution_options(lethe_write=True) as conn, \
                conn.begin():
            if conn.execute(sa.text("SELECT to_regclass(:p)"),
                            {"p": self._quoted(partition)}).scalar() is None:
                return 0
            try:  # SHARE waits for an archiver's EXCLUSIVE lock to go
                with conn.begin_nested():
                    conn.execute(sa.text(f"LOCK TABLE {self._quoted(partition)} IN SHARE MODE"))
            except sa.exc.ProgrammingError as exc:
                if getattr(exc.orig, "sqlstate", None) == "42P01":
                    return 0  # dropped while we waited: the archiving committed
                raise
            return int(conn.execute(sa.select(sa.func.count()).select_from(part)
                                    .where(self.compile(where, table, part))).scalar_one())

    def insert_missing(self, table: str, key: str,
                       rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Insert the rows whose key is not in the table (archived rows coming back);
        returns (inserted, already present)."""
        t = self.table(table)
        k = self.column(t, key, table)
        columns = {name: self.column(t, name, table) for name in (rows[0] if rows else {})}
        typed = [{str(c.key): from_archive(c.type, row.get(name)) for name, c in columns.items()}
                 for row in rows]
        with self._errors(f"restoring rows of {table}"), \
                self.engine.connect().execution_options(lethe_write=True) as conn, \
                conn.begin():
            present: set[Any] = set()
            keys = [row[str(k.key)] for row in typed]
            for start in range(0, len(keys), 1000):
                present.update(conn.execute(sa.select(k).where(
                    self._in(k, keys[start:start + 1000]))).scalars())
            missing = [row for row in typed if row[str(k.key)] not in present]
            if missing:
                conn.execute(sa.insert(t), missing)
        return len(missing), len(typed) - len(missing)

    def count_each(self, queries: Sequence[tuple[str, Condition]]) -> list[int]:
        if not queries:
            return []
        counts = [sa.select(sa.func.count()).select_from(self.table(table))
                  .where(self.compile(where, table)).scalar_subquery()
                  for table, where in queries]
        with self._errors("counting rows"), self.engine.connect() as conn:
            return [int(n) for n in conn.execute(sa.select(*counts)).one()]

    def _mostly_dead_index(self, conn: Connection, table: str) -> bool:
        removed = self._removed.get(table, 0)
        if self.dialect != "postgresql" or removed == 0:
            return False
        return removed * 10 > self._estimated_rows(conn, table)

    def _estimated_rows(self, conn: Connection, table: str) -> int:
        """The planner's row estimate (-1 when never analyzed), without scanning; read
        once per store, as it changes only with ANALYZE."""
        if table not in self._estimates:
            estimate = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"),
                {"name": self._quoted(table)}).scalar()
            self._estimates[table] = int(estimate if estimate is not None else -1)
        return self._estimates[table]

    def sweep_batch(self, sweep: Sweep, after: Value | None, limit: int) -> BatchResult:
        t = self.table(sweep.table)
        key = self.column(t, sweep.key, sweep.table)
        selected = self.compile(sweep.where, sweep.table)
        if after is None:
            self._spans[sweep.table] = self._dense_span(t, key, sweep)
        span = self._spans.get(sweep.table)
        with self._errors(f"sweeping {sweep.table}"), \
                self.engine.connect().execution_options(lethe_write=True) as conn, conn.begin():
            if not sweep.durable and self.dialect == "postgresql":
                # and its transaction id: `flush` checks the last one survived
                self._unflushed.xid = int(conn.execute(sa.text(
                    "SELECT set_config('synchronous_commit', 'off', true), txid_current()"))
                    .one()[1])
            if span is not None:
                low = span.low - 1 if after is None else int(after)
                if low >= span.high:
                    return BatchResult(None, 0)
                width = limit if after is None else self._widths.get(sweep.table, limit)
                upper: Value = min(low + width, span.high)
                in_window = sa.and_(key > low, key <= upper, selected)
            else:
                if after is not None:
                    selected = sa.and_(key > after, selected)
                window = (sa.select(key.label("k")).where(selected).order_by(key).limit(limit)
                          .subquery())
                # ORDER BY ... DESC LIMIT 1, not max(): max() is undefined for uuid; the
                # count says whether the window was full, i.e. whether more may follow.
                found = conn.execute(sa.select(
                    window.c.k, sa.select(sa.func.count()).select_from(window).scalar_subquery())
                    .order_by(window.c.k.desc()).limit(1)).first()
                if found is None:
                    return BatchResult(None, 0)
                upper, last = found[0], found[1] < limit
                in_window = sa.and_(selected, key <= upper)
            cascaded: dict[str, int] = {}
            parent_keys = sa.select(key).where(in_window)
            for cascade in sweep.cascades:
                self._cascade(conn, cascade, parent_keys, cascaded)
            tallies: dict[Value, int] | None = None if sweep.tally is None else {}
            tally = None if sweep.tally is None else self.column(t, sweep.tally, sweep.table)
            rows = self._apply(conn, t, sweep.table, key, in_window, sweep.effect,
                               tally, tallies)
        if isinstance(sweep.effect, Delete | Archive):
            self._removed[sweep.table] = self._removed.get(sweep.table, 0) + rows
        if span is not None:
            self._widths[sweep.table] = next_width(limit, int(upper) - low, rows)
            last = upper >= span.high
        return BatchResult(upper, rows, cascaded, last, tallies or {})

    def flush(self) -> None:
        """PostgreSQL: one synchronous commit of a transaction that takes an id (so it
        writes a commit record) flushes the log up to it, every earlier commit with it;
        then the last unflushed batch must be committed on the server as it is now. A
        server that crashed and came back in between (the pool reconnects quietly) has
        lost that batch: raise rather than let anyone audit or certify it. The log
        replays in order, so the last batch surviving means all before it did. SQLite
        commits as its journal settings say; nothing to do."""
        xid = getattr(self._unflushed, "xid", None)
        if self.dialect != "postgresql" or xid is None:
            return
        with self._errors("making deletions durable"), self.engine.connect() as conn:
            with conn.begin():
                conn.execute(sa.text("SET LOCAL synchronous_commit = on"))
                conn.execute(sa.text("SELECT txid_current()"))
            try:
                status = conn.execute(sa.text("SELECT txid_status(:x)"), {"x": xid}).scalar()
            except sa.exc.DBAPIError:  # an id the server never saw: its log was lost
                status = None
        if status != "committed":
            raise StoreError("the database lost its last deletions (did it crash or "
                             "restart?): nothing is audited or certified; run again",
                             path=f"stores.{self.name}")
        self._unflushed.xid = None

    def _dense_span(self, t: sa.Table, key: sa.ColumnElement[Any],
                    sweep: Sweep) -> KeySpan | None:
        """Key ranges for integer keys that are dense; None means use key windows."""
        if sweep.selective or isinstance(sweep.effect, Anonymize | Archive) \
                or python_type(key.type) is not int:
            return None  # anonymizing reads every row anyway; windows bound it exactly
        with self._errors(f"reading the key range of {sweep.table}"), \
                self.engine.connect() as conn:
            low, high = conn.execute(sa.select(sa.func.min(key), sa.func.max(key))).one()
            if low is None:
                return None
            if self.dialect == "postgresql":
                rows = self._estimated_rows(conn, sweep.table)  # -1 falls back to windows
            else:
                rows = int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
        span = KeySpan(int(low), int(high))
        return span if is_dense(span, rows) else None

    def _cascade(self, conn: Connection, cascade: Cascade, parent_keys: sa.Select[Any],
                 counts: dict[str, int]) -> None:
        t = self.table(cascade.table)
        linked = sa.and_(self.column(t, cascade.link, cascade.table).in_(parent_keys),
                         self.compile(cascade.where, cascade.table))
        key = self.column(t, cascade.key, cascade.table)
        if isinstance(cascade.effect, Delete):
            for child in cascade.children:
                self._cascade(conn, child, sa.select(key).where(linked), counts)
        rows = self._apply(conn, t, cascade.table, key, linked, cascade.effect)
        counts[cascade.label] = counts.get(cascade.label, 0) + rows

    def _apply(self, conn: Connection, t: sa.Table, table_name: str, key: sa.ColumnElement[Any],
               where: sa.ColumnElement[bool], effect: Effect,
               tally: sa.ColumnElement[Any] | None = None,
               tallies: dict[Value, int] | None = None) -> int:
        """Apply the effect; with `tally`, count the affected rows per value of that
        column into `tallies` (read back with RETURNING, in the same statement)."""
        statement: sa.Delete | sa.Update
        if isinstance(effect, Delete):
            statement = sa.delete(t).where(where)
        elif isinstance(effect, SetColumns):
            values = {}
            for name, value in effect.values:
                column = self.column(t, name, table_name)
                values[column.key] = bind_time(column, value, millis=self._in_millis(column)) \
                    if isinstance(value, datetime) else value
            statement = sa.update(t).where(where).values(values)
        elif isinstance(effect, Anonymize):
            return self._anonymize(conn, t, table_name, key, where, effect, tally, tallies)
        elif isinstance(effect, Archive):
            return self._archive(conn, t, key, where, effect)
        else:
            raise TypeError(f"unknown effect {type(effect).__name__}")
        if tally is None or tallies is None:
            return int(conn.execute(statement).rowcount)
        returned = conn.execute(statement.returning(tally)).scalars().all()
        _count_into(tallies, returned)
        return len(returned)

    def _archive(self, conn: Connection, t: sa.Table, key: sa.ColumnElement[Any],
                 where: sa.ColumnElement[bool], effect: Archive) -> int:
        query = sa.select(t).where(where).order_by(key)
        if self.dialect == "postgresql":
            query = query.with_for_update(of=t)  # what is archived is what gets deleted
        result = conn.execute(query)
        columns = tuple(result.keys())
        rows = [tuple(r) for r in result]
        if not rows:
            return 0
        effect.write(columns, rows)
        position = columns.index(key.key)
        keys = [row[position] for row in rows]
        deleted = 0
        for start in range(0, len(keys), 1000):  # the same rows: the key and the selection
            deleted += int(conn.execute(sa.delete(t).where(
                where, self._in(key, keys[start:start + 1000]))).rowcount)
        if deleted != len(rows):  # a key shared with rows not archived: delete nothing
            raise StoreError(f"archiving {t.name}: {deleted} rows matched the {len(rows)} "
                             "archived (is the key unique?); nothing deleted",
                             path=f"stores.{self.name}")
        return deleted

    def _anonymize(self, conn: Connection, t: sa.Table, table_name: str,
                   key: sa.ColumnElement[Any], where: sa.ColumnElement[bool],
                   effect: Anonymize, tally: sa.ColumnElement[Any] | None = None,
                   tallies: dict[Value, int] | None = None) -> int:
        columns = [self.column(t, c, table_name) for c, _ in effect.transforms]
        query = sa.select(key, *columns, *([] if tally is None else [tally])).where(where)
        if self.dialect == "postgresql":
            # Lock what we read: an application write in between must not be overwritten
            # with the anonymized old value (SQLite's write lock is already held).
            query = query.with_for_update(of=t)
        rows = conn.execute(query).all()
        if not rows:
            return 0
        if tally is not None and tallies is not None:
            _count_into(tallies, [row[-1] for row in rows])
        names = [c for c, _ in effect.transforms]
        params = []
        for row in rows:
            new = {f"v_{i}": fn(row[i + 1]) for i, (_, fn) in enumerate(effect.transforms)}
            new["k_key"] = row[0]
            params.append(new)
        values: dict[str, Any] = {name: sa.bindparam(f"v_{i}") for i, name in enumerate(names)}
        if effect.detach is not None:
            values[effect.detach] = None
        statement = sa.update(t).where(key == sa.bindparam("k_key")).values(values)
        conn.execute(statement, params)
        return len(rows)

    def close(self) -> None:
        self.engine.dispose()


def _count_into(tallies: dict[Value, int], values: Sequence[Value]) -> None:
    for value in values:
        if value is not None:
            tallies[value] = tallies.get(value, 0) + 1
