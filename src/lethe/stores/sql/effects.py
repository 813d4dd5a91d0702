"""What a batch does to the rows it selected — delete, set columns, anonymize, archive —
and the same to the child rows it cascades into: the statements every kind of SQL
batch (a key window, a key range, a page range) runs inside its transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lethe.errors import StoreError
from lethe.stores.base import (
    Anonymize,
    Archive,
    Cascade,
    Delete,
    Effect,
    SetColumns,
    Sweep,
    Value,
    key_columns,
)
from lethe.stores.sql.compile import Compiler
from lethe.stores.sql.values import bind_time


class Effects(Compiler):
    """The effects of `Sweeps` (a mixin of `SqlStore`)."""

    def key_of(self, t: sa.Table, key: str, table: str) -> list[sa.ColumnElement[Any]]:
        """The key's column(s): one, or a composite primary key's in order."""
        return [self.column(t, name, table) for name in key_columns(key)]

    def _cascade(self, conn: Connection, cascade: Cascade, parent_keys: sa.Select[Any],
                 counts: dict[str, int]) -> None:
        t = self.table(cascade.table)
        linked = sa.and_(self.column(t, cascade.link, cascade.table).in_(parent_keys),
                         self.compile(cascade.where, cascade.table))
        keys = self.key_of(t, cascade.key, cascade.table)
        if isinstance(cascade.effect, Delete):
            for child in cascade.children:  # (only a single-column key has children)
                self._cascade(conn, child, sa.select(keys[0]).where(linked), counts)
        rows = self._apply(conn, t, cascade.table, keys, linked, cascade.effect)
        counts[cascade.label] = counts.get(cascade.label, 0) + rows

    def _apply_window(self, conn: Connection, sweep: Sweep, t: sa.Table,
                      keys: list[sa.ColumnElement[Any]], key: Any,
                      in_window: sa.ColumnElement[bool], cascaded: dict[str, int],
                      tallies: dict[Value, int] | None) -> int:
        """A batch's statements for the window of `sweep`'s table it chose (by keys or by
        pages): the children first (`cascaded` counts them per dataset), then the rows,
        their tallies read back into `tallies`. The rows the effect took."""
        if sweep.cascades:  # a composite key has no children: the policy says so
            parent_keys = sa.select(key).where(in_window)
            for cascade in sweep.cascades:
                self._cascade(conn, cascade, parent_keys, cascaded)
        tally = None if sweep.tally is None else self.column(t, sweep.tally, sweep.table)
        return self._apply(conn, t, sweep.table, keys, in_window, sweep.effect, tally, tallies)

    def _apply(self, conn: Connection, t: sa.Table, table_name: str,
               keys: list[sa.ColumnElement[Any]], where: sa.ColumnElement[bool], effect: Effect,
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
        elif isinstance(effect, Anonymize) and rewrites_blind(effect, tally):
            # one statement, nothing read first
            statement = sa.update(t).where(where).values(
                self.constant_values(t, table_name, effect))
        elif isinstance(effect, Anonymize) and effect.constants is not None \
                and tally is not None and tallies is not None and self.dialect == "postgresql":
            return self._rewrite_counted(conn, t, table_name, keys, where, effect, tally,
                                         tallies)
        elif isinstance(effect, Anonymize):
            return self._anonymize(conn, t, table_name, keys, where, effect, tally, tallies)
        elif isinstance(effect, Archive):
            if len(keys) != 1:  # the catalog refuses it: archive chunks list one key
                raise StoreError(f"archiving {t.name}: a composite key cannot be archived",
                                 path=f"stores.{self.name}")
            return self._archive(conn, t, keys[0], where, effect)
        else:
            raise TypeError(f"unknown effect {type(effect).__name__}")
        if tally is None or tallies is None:
            return int(conn.execute(statement).rowcount)
        returned = conn.execute(statement.returning(tally)).scalars().all()
        count_into(tallies, returned)
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
                where, self.in_values(key, keys[start:start + 1000]))).rowcount)
        if deleted != len(rows):  # a key shared with rows not archived: delete nothing
            raise StoreError(f"archiving {t.name}: {deleted} rows matched the {len(rows)} "
                             "archived (is the key unique?); nothing deleted",
                             path=f"stores.{self.name}")
        return deleted

    def _anonymize(self, conn: Connection, t: sa.Table, table_name: str,
                   keys: list[sa.ColumnElement[Any]], where: sa.ColumnElement[bool],
                   effect: Anonymize, tally: sa.ColumnElement[Any] | None = None,
                   tallies: dict[Value, int] | None = None) -> int:
        columns = [self.column(t, c, table_name) for c, _ in effect.transforms]
        query = sa.select(*(raw_key(keys, k) for k in keys), *columns,
                          *([] if tally is None else [tally])).where(where)
        if self.dialect == "postgresql":
            # Lock what we read: an application write in between must not be overwritten
            # with the anonymized old value (SQLite's write lock is already held).
            query = query.with_for_update(of=t)
        rows = conn.execute(query).all()
        if not rows:
            return 0
        if tally is not None and tallies is not None:
            count_into(tallies, [row[-1] for row in rows])
        names = [c for c, _ in effect.transforms]
        width = len(keys)
        params = []
        for row in rows:
            new = {f"v_{i}": fn(row[i + width]) for i, (_, fn) in enumerate(effect.transforms)}
            new.update({f"k_{i}": row[i] for i in range(width)})
            params.append(new)
        values: dict[str, Any] = {name: sa.bindparam(f"v_{i}") for i, name in enumerate(names)}
        if effect.detach is not None:
            values[effect.detach] = None
        statement = sa.update(t).where(*(raw_key(keys, k) == sa.bindparam(f"k_{i}")
                                         for i, k in enumerate(keys))).values(values)
        conn.execute(statement, params)
        return len(rows)

    def _rewrite_counted(self, conn: Connection, t: sa.Table, table_name: str,
                         keys: list[sa.ColumnElement[Any]], where: sa.ColumnElement[bool],
                         effect: Anonymize, tally: sa.ColumnElement[Any],
                         tallies: dict[Value, int]) -> int:
        """An anonymization by constants counted per value of a column it rewrites or cuts
        (a group's erasure cuts the link it counts by), on PostgreSQL, in one statement:
        the rows locked and their old tally values read in a subquery, the UPDATE joined
        to it returning those. It read the rows, then updated them one statement per
        row (a bulk erasure's 500 subjects' addresses: ~500 statements)."""
        old = sa.select(*(raw_key(keys, k).label(f"k{i}") for i, k in enumerate(keys)),
                        tally.label("lethe_tally")).where(where).with_for_update(of=t) \
            .subquery("lethe_old")
        statement = sa.update(t).where(*(raw_key(keys, k) == old.c[f"k{i}"]
                                         for i, k in enumerate(keys))) \
            .values(self.constant_values(t, table_name, effect)) \
            .returning(old.c.lethe_tally)
        returned = conn.execute(statement).scalars().all()
        count_into(tallies, returned)
        return len(returned)

    def constant_values(self, t: sa.Table, table_name: str,
                        effect: Anonymize) -> dict[sa.ColumnElement[Any], Any]:
        """An UPDATE's values for an anonymization by constants (`Anonymize.constants`):
        each column its constant where it is not NULL, NULL where it is; the link
        column, if the rows are cut loose, NULL. The same rewrite as the functions do
        row by row, evaluated on the row the UPDATE locks, so no write in between is
        overwritten with a stale value."""
        assert effect.constants is not None
        values: dict[sa.ColumnElement[Any], Any] = {}
        for name, value in effect.constants:
            column = self.column(t, name, table_name)
            # NULL stays: THEN the column itself, so the CASE has the column's type (with
            # only NULL and a parameter PostgreSQL types it text, which an enum, inet,
            # xml... column refuses)
            values[column] = sa.null() if value is None else sa.case(
                (column.is_(None), column), else_=sa.bindparam(None, value, column.type))
        if effect.detach is not None:
            values[self.column(t, effect.detach, table_name)] = None
        return values


def rewrites_blind(effect: Anonymize, tally: sa.ColumnElement[Any] | None) -> bool:
    """Can this anonymization rewrite its rows without reading them first? By constants
    (`Anonymize.constants`), and unless it must count them per value of a column it
    rewrites or cuts (RETURNING gives the rewritten value: those are read first)."""
    return effect.constants is not None and (tally is None or tally.key not in {
        effect.detach, *(name for name, _ in effect.constants)})


def raw_key(keys: list[sa.ColumnElement[Any]], key: sa.ColumnElement[Any]) -> Any:
    """A composite key's column read as the database holds it, so that it binds back
    to exactly that (SQLite keeps a timestamp as text that need not be in SQLAlchemy's
    own format: a processed round trip would match nothing)."""
    return key if len(keys) == 1 else sa.type_coerce(key, sa.types.NullType())


def count_into(tallies: dict[Value, int], values: Sequence[Value]) -> None:
    for value in values:
        if value is not None:
            tallies[value] = tallies.get(value, 0) + 1
