"""Range partitions (PostgreSQL): listing them, dropping expired ones, archiving one.

A partition whose every row is past its cutoff goes with one DETACH and DROP instead
of row batches. The statements here take locks on the parent table, so each one waits
at most `PARTITION_LOCK_TIMEOUT` (never queueing the application's queries behind it
for long) and reads the holds only after the detach, so a hold placed meanwhile keeps
the partition attached.

`PARTITION_LOCK_TIMEOUT` is read through the package (`lethe.stores.sql`) at the
moment it is used: that name is the one setting callers and tests change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from lethe.errors import StoreError
from lethe.stores.base import FALSE, Condition, Journal, Partition, PartitionDrops
from lethe.stores.sql.compile import Compiler

# SQL sent as written: without parameters the driver must not read `%` in a name as one
VERBATIM: dict[str, Any] = {"no_parameters": True}
PARTITION_LOCK_TIMEOUT = "5s"  # how long a DETACH may wait for the parent's lock
_RANGE_UPPER = re.compile(r"TO \((.+)\)\s*$")  # a range partition's upper bound


def _lock_timeout() -> str:
    from lethe.stores import sql  # the package's name, not this module's copy

    timeout: str = sql.PARTITION_LOCK_TIMEOUT
    return timeout


class Partitions(Compiler):
    """The partition side of `SqlStore`; on SQLite there are none."""

    def partitions(self, table: str, column: str) -> list[Partition]:
        if self.dialect != "postgresql":
            return []
        with self._reading(f"reading the partitions of {table}") as conn:
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

    def _partition(self, table: str, partition: str) -> sa.Table:
        """A partition as a table with its parent's columns (partitions are not listed
        among the store's tables)."""
        return sa.Table(partition, sa.MetaData(), *(
            sa.Column(c.name, c.type) for c in self.table(table).columns))

    def count_in_partition(self, table: str, partition: str, where: Condition) -> int:
        part = self._partition(table, partition)
        with self._reading(f"counting rows of {table}") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(part)
                                    .where(self.compile(where, table, part))).scalar_one())

    def drop_partitions(self, table: str, partitions: Sequence[str],
                        held: Callable[[], Condition], *, estimate: bool = False,
                        journal: Journal | None = None) -> PartitionDrops:
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
                        if outcome is not None and journal is not None:
                            journal(outcome[0], {})  # recorded before the drop commits
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
            f"SET LOCAL lock_timeout = '{_lock_timeout()}'; "
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
                          chunk_rows: int, journal: Journal | None = None) -> int | None:
        part, child = self._partition(table, partition), self._quoted(partition)
        rows = 0
        with self._errors(f"archiving a partition of {table}"), \
                self.engine.connect().execution_options(lethe_write=True) as conn, \
                conn.begin():
            conn.execute(sa.text(f"SET LOCAL lock_timeout = '{_lock_timeout()}'"))
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
            if journal is not None:
                journal(rows, {})  # recorded before the drop commits
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
