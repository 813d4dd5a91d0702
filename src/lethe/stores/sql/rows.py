"""Reading rows: counts, selections, distinct values, the oldest time, and the one
write that is not a sweep (archived rows put back).

Planning, reports, discovery and verification all ask these questions; none of them
changes a row, except `insert_missing`, which restores archived rows and lives here
because it is an insert of known rows, not a deletion (those are `sweeps.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lethe.stores.base import Condition, Value, looks_up
from lethe.stores.sql.compile import Compiler
from lethe.stores.sql.values import earliest, from_archive


class Rows(Compiler):
    """The read side of `SqlStore` (and restoring archived rows)."""

    def count(self, table: str, where: Condition) -> int:
        t = self.table(table)
        split = self.unknown_parents(where, table) if self.dialect == "postgresql" else None
        if split is not None:
            fast, unknown = split
            with self._errors(f"counting rows of {table}"), self.engine.connect() \
                    .execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
                # one snapshot: no row of an unknown parent, then the count without lookups
                if not conn.execute(sa.select(sa.exists().where(unknown))).scalar():
                    return int(conn.execute(sa.select(sa.func.count()).select_from(t)
                                            .where(fast)).scalar_one())
        query, values = self.prepared(("count",), table, where, lambda selected: sa.select(
            sa.func.count()).select_from(t).where(selected))
        with self._errors(f"counting rows of {table}"), self.engine.connect() as conn, \
                conn.begin():
            if self._mostly_dead_index(conn, table) and not looks_up(where):
                # Right after a mass delete every index entry of a removed row is still
                # there until VACUUM; walking them costs ~5x a sequential scan. (Not
                # when each row looks another table up: that lookup needs its index.)
                conn.execute(sa.text("SET LOCAL enable_indexscan = off"))
                conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
            return int(conn.execute(query, values).scalar_one())

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
        with self._reading(f"reading rows of {table}") as conn:
            result = conn.execute(query)
            return tuple(result.keys()), [tuple(r) for r in result]

    def values(self, table: str, column: str, where: Condition) -> list[Any]:
        t = self.table(table)
        c = self.column(t, column, table)
        query, values = self.prepared(("values", column), table, where, lambda selected:
                                      sa.select(c).distinct().where(c.is_not(None), selected))
        with self._reading(f"reading links of {table}") as conn:
            return list(conn.execute(query, values).scalars())

    def select(self, table: str, columns: Sequence[str],
               where: Condition) -> list[tuple[Any, ...]]:
        t = self.table(table)
        query, values = self.prepared(("select", *columns), table, where, lambda selected:
                                      sa.select(*(self.column(t, c, table) for c in columns))
                                      .where(selected))
        with self._reading(f"reading rows of {table}") as conn:
            return [tuple(r) for r in conn.execute(query, values).all()]

    def select_at_most(self, table: str, columns: Sequence[str],
                       most: int) -> list[tuple[Any, ...]] | None:
        """Every row's `columns`, when the table has at most `most` rows (else None,
        having read no more than one past that)."""
        t = self.table(table)
        query = sa.select(*(self.column(t, c, table) for c in columns)).limit(most + 1)
        with self._reading(f"reading rows of {table}") as conn:
            # all() fetches in one call: iterating fetched row by row (10,000 settings:
            # ~6 ms of a run that reads them when it starts)
            rows = [tuple(r) for r in conn.execute(query).all()]
        return None if len(rows) > most else rows

    def count_by(self, table: str, column: str, where: Condition) -> dict[Value, int]:
        t = self.table(table)
        c = self.column(t, column, table)
        query, values = self.prepared(("count by", column), table, where, lambda selected:
                                      sa.select(c, sa.func.count())
                                      .where(c.is_not(None), selected).group_by(c))
        with self._reading(f"counting rows of {table}") as conn:
            return {value: int(n) for value, n in conn.execute(query, values).all()}

    def oldest(self, table: str, column: str, where: Condition) -> datetime | None:
        t = self.table(table)
        c = self.column(t, column, table)
        millis = self.dialect != "sqlite" and self._in_millis(c)
        minimum, as_instant = earliest(c, self.dialect, millis=millis)
        query = sa.select(minimum).select_from(t).where(c.is_not(None),
                                                       self.compile(where, table))
        with self._reading(f"reading the oldest {column} of {table}") as conn:
            return as_instant(conn.execute(query).scalar())

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
                    self.in_values(k, keys[start:start + 1000]))).scalars())
            missing = [row for row in typed if row[str(k.key)] not in present]
            if missing:
                conn.execute(sa.insert(t), missing)
        return len(missing), len(typed) - len(missing)

    def count_each(self, queries: Sequence[tuple[str, Condition]]) -> list[int]:
        """One statement counts them all (an erasure's baselines: every dataset of the
        subject in one round trip), built once per shape of the queries."""
        if not queries:
            return []
        shaped = [self.shape(where, table, f"lethe_q{i}_")
                  for i, (table, where) in enumerate(queries)]
        tables = [table for table, _ in queries]
        shapes = [shape for shape, _ in shaped]
        statement = self.shaped(("count each", tuple(zip(tables, shapes, strict=True))),
                                lambda: sa.select(*(
                                    sa.select(sa.func.count()).select_from(self.table(table))
                                    .where(self.build(shape, table)).scalar_subquery()
                                    for table, shape in zip(tables, shapes, strict=True))))
        values = {name: value for _, named in shaped for name, value in named.items()}
        with self._reading("counting rows") as conn:
            return [int(n) for n in conn.execute(statement, values).one()]

    def _mostly_dead_index(self, conn: Connection, table: str) -> bool:
        removed = self._removed.get(table, 0)
        if self.dialect != "postgresql" or removed == 0:
            return False
        return removed * 10 > self._estimated_rows(conn, table)
