"""What the database says its schema is: tables, columns, keys, indexes.

Names that go into statements come from here (reflected, so they are real and get
quoted by the dialect), and a name the schema does not have stops with
`SchemaMismatch` before anything is sent. The planner's row estimate lives here too:
it is read from the catalog, like the schema, and never by scanning a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchTableError

from lethe.errors import SchemaMismatch
from lethe.stores.base import ColumnInfo, ForeignKey, TableInfo
from lethe.stores.sql.engine import SqlBase


class Schema(SqlBase):
    """Reading the schema once per store, and the tables and columns it names."""

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

    def _partition_names(self) -> set[str]:
        """Partitions are part of their parent table, not tables of their own."""
        if self.dialect != "postgresql":
            return set()
        with self.engine.connect() as conn:
            return set(conn.execute(sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relispartition AND n.nspname = current_schema()")).scalars())

    def _estimated_rows(self, conn: Connection, table: str) -> int:
        """The planner's row estimate (-1 when never analyzed), without scanning; read
        once per store, as it changes only with ANALYZE."""
        if table not in self._estimates:
            estimate = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"),
                {"name": self._quoted(table)}).scalar()
            self._estimates[table] = int(estimate if estimate is not None else -1)
        return self._estimates[table]
