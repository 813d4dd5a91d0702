"""What the database says its schema is: tables, columns, keys, indexes.

Names that go into statements come from here (reflected, so they are real and get
quoted by the dialect), and a name the schema does not have stops with
`SchemaMismatch` before anything is sent. The planner's row estimate lives here too:
it is read from the catalog, like the schema, and never by scanning a table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine.reflection import ObjectKind, ObjectScope
from sqlalchemy.exc import NoSuchTableError

from lethe.errors import SchemaMismatch
from lethe.stores.base import ColumnInfo, ForeignKey, TableInfo
from lethe.stores.sql.engine import SqlBase


@dataclass(frozen=True)
class _Declared:
    """What tables declare, read in one go for all of them (per table name): columns,
    primary keys, foreign keys, indexes, unique constraints."""

    columns: Mapping[str, list[Any]]
    primary_keys: Mapping[str, Any]
    foreign_keys: Mapping[str, list[Any]]
    indexes: Mapping[str, list[Any]]
    uniques: Mapping[str, list[Any]]

    @classmethod
    def read(cls, inspector: Any, names: Sequence[str], **kind: Any) -> _Declared:
        """One catalog query per kind of thing on PostgreSQL, one pass over the tables on
        SQLite."""
        if not names:
            return cls({}, {}, {}, {}, {})
        # named as sa.Table names them, so the reflection cache knows them as the same
        quoted = [sa.sql.quoted_name(name, None) for name in names]
        return cls(*(_by_name(read(filter_names=quoted, **kind)) for read in (
            inspector.get_multi_columns, inspector.get_multi_pk_constraint,
            inspector.get_multi_foreign_keys, inspector.get_multi_indexes,
            inspector.get_multi_unique_constraints)))


class Schema(SqlBase):
    """Reading the schema once per store, and the tables and columns it names."""

    def tables(self) -> Mapping[str, TableInfo]:
        if self._tables is None:
            with self._errors("reading the schema"):
                # kept: `table` reflects through it, reusing the columns, keys and indexes
                # read here instead of asking the database for them a second time
                inspector = self._inspector = sa.inspect(self.engine)
                parts, leaves = self._partitions()
                names = [name for name in inspector.get_table_names() if name not in parts]
                # read as `table` reads one table (any kind, any scope): SQLAlchemy's
                # reflection cache then answers it without asking the database again
                declared = _Declared.read(inspector, names, kind=ObjectKind.ANY,
                                          scope=ObjectScope.ANY)
                of_leaves = _Declared.read(
                    inspector, sorted({leaf for found in leaves.values() for leaf in found}))
                # (a table dropped since its name was read has no columns entry: absent)
                self._tables = {name: _describe(name, declared, leaves.get(name, ()),
                                                of_leaves)
                                for name in names if name in declared.columns}
        return self._tables

    def table(self, name: str) -> sa.Table:
        found = self._metadata.tables.get(name)
        if found is not None:
            return found
        with self._reflecting:  # one thread reflects; the others wait and reuse it
            if name not in self._metadata.tables:
                if name not in self.tables():
                    raise SchemaMismatch(f"table {name!r} does not exist",
                                         path=f"stores.{self.name}")
                with self._errors(f"reading table {name}"):  # the database went away
                    try:
                        sa.Table(name, self._metadata,
                                 autoload_with=self._inspector or self.engine)
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

    def _partitions(self) -> tuple[set[str], dict[str, tuple[str, ...]]]:
        """Partitions are part of their partitioned table, not tables of their own: every
        partition of the schema, and each partitioned table -> its leaf partitions at any
        depth (partitions of partitions included). One catalog query."""
        if self.dialect != "postgresql":
            return set(), {}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT c.relname, r.relname, c.relkind <> 'p' FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " JOIN pg_class r ON r.oid = pg_partition_root(c.oid)"
                " WHERE c.relispartition AND n.nspname = current_schema()"
                " ORDER BY 2, 1")).all()
        leaves: dict[str, tuple[str, ...]] = {}
        for part, root, leaf in rows:
            if leaf:
                leaves[root] = (*leaves.get(root, ()), part)
        return {part for part, _root, _leaf in rows}, leaves

    def _estimated_rows(self, conn: Connection, table: str) -> int:
        """The planner's row estimate (-1 when never analyzed), without scanning; read
        once per store, as it changes only with ANALYZE."""
        if table not in self._estimates:
            estimate = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"),
                {"name": self._quoted(table)}).scalar()
            self._estimates[table] = int(estimate if estimate is not None else -1)
        return self._estimates[table]


def _describe(name: str, declared: _Declared, leaves: Sequence[str],
              of_leaves: _Declared) -> TableInfo:
    """A table as lethe sees it. A partitioned table's foreign keys include those declared
    on its partitions only (each one keeps the rows it points at), and a column counts as
    indexed when the table or every leaf partition has an index leading with it;
    uniqueness comes from the table alone (a unique index of one partition says nothing
    across partitions)."""
    columns = {c["name"]: ColumnInfo(c["name"], str(c["type"]), bool(c["nullable"]))
               for c in declared.columns.get(name, ())}
    pk = tuple((declared.primary_keys.get(name) or {}).get("constrained_columns") or ())
    fks: dict[ForeignKey, tuple[str, ...]] = {}
    for fk in [*declared.foreign_keys.get(name, ()),
               *(fk for leaf in leaves for fk in of_leaves.foreign_keys.get(leaf, ()))]:
        # partitions declaring the same key: one key, all their names
        found = ForeignKey(tuple(fk["constrained_columns"]), fk["referred_table"],
                           tuple(fk["referred_columns"]))
        names = fks.get(found, ())
        fks[found] = names + ((fk["name"],) if fk.get("name") and fk["name"] not in names
                              else ())
    indexes = declared.indexes.get(name, [])
    indexed = [_columns(ix) for ix in indexes]
    if leaves:
        leading = [{_columns(ix)[:1] for ix in of_leaves.indexes.get(leaf, ())}
                   | {tuple((of_leaves.primary_keys.get(leaf) or {})
                            .get("constrained_columns") or ())[:1]}
                   for leaf in leaves]
        indexed += sorted(set.intersection(*leading) - {()})
    uniques = [tuple(u["column_names"]) for u in declared.uniques.get(name, ())]
    unique = [_columns(ix) for ix in indexes if ix.get("unique")] + uniques
    if pk:
        indexed.append(pk)
        unique.append(pk)
    named = tuple(replace(fk, names=names) for fk, names in fks.items())
    return TableInfo(name, columns, pk, named, tuple(indexed + uniques), tuple(unique))


def _by_name(found: Mapping[tuple[str | None, str], Any]) -> dict[str, Any]:
    """SQLAlchemy's multi-table reflection keys its answer by (schema, table)."""
    return {name: value for (_schema, name), value in found.items()}


def _columns(index: Mapping[str, Any]) -> tuple[str, ...]:
    """An index's column list (expressions left out)."""
    return tuple(str(c) for c in index["column_names"] if c is not None)
