"""`SqlStore`: the RowStore over one SQLAlchemy engine, assembled from its parts.

Each part is a mixin over `SqlBase` (the engine and the shared caches) and lives in
the module named for its job; this module only puts them together, so the class a
caller opens is the whole store and the modules stay small:

    engine.SqlBase        the engine, its dialect, error translation, caches
    reflect.Schema        tables, columns, keys (reflected once)
    compile.Compiler      Condition trees as SQLAlchemy expressions
    rows.Rows             counts and reads; restoring archived rows
    partitions.Partitions listing, dropping and archiving range partitions
    effects.Effects       what a batch does to its rows: delete, set, anonymize, archive
    pages.PageWalks       PostgreSQL batches over a table's pages (block walks)
    sweeps.Sweeps         batches by key, the entry point of every batch; flush

The capability flags (see `lethe.stores.base.CAPABILITIES`) that hold on every
dialect are set on `SqlStore`; those that differ are set on one class per dialect,
which is what `lethe.stores.registry.open_store` opens. A plain `SqlStore` promises
only what every dialect does.
"""

from __future__ import annotations

from lethe.errors import StoreError
from lethe.stores.base import Capabilities
from lethe.stores.sql.partitions import Partitions
from lethe.stores.sql.rows import Rows
from lethe.stores.sql.sweeps import Sweeps


class SqlStore(Rows, Partitions, Sweeps):
    """A RowStore over one SQLAlchemy engine (SQLite, PostgreSQL)."""

    kind = "sql"
    capabilities = Capabilities()
    # sweep_batch runs the cascades and the effect in one transaction per batch
    transactional_batches = True
    # batches walk the key upward from `after`: the last committed key resumes a run
    ordered_keys = True
    # tallies are read with DELETE/UPDATE ... RETURNING (PostgreSQL; SQLite 3.35+)
    returning = True
    # the dialect classes below say; a plain SqlStore does not promise either
    drops_partitions = False
    asynchronous_commit = False

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name, url)
        dialect = getattr(type(self), "__dialect__", None)
        if dialect is not None:  # a dialect class: its promises hold for that database only
            _same_dialect(self, dialect)


class SqliteStore(SqlStore):
    """SQLite (`sqlite:///path`)."""

    __dialect__ = "sqlite"
    # SQLite has no partitions: `partitions()` is always empty, rows go in batches
    drops_partitions = False
    # every commit is as durable as the file's journal settings; `flush` does nothing
    asynchronous_commit = False


class PostgresStore(SqlStore):
    """PostgreSQL (`postgresql://…`, through psycopg 3)."""

    __dialect__ = "postgresql"
    # declarative range partitions on a time column: DETACH, re-read holds, DROP
    drops_partitions = True
    # `durable=False` batches set synchronous_commit off; `flush` checks the last xid
    asynchronous_commit = True


def _same_dialect(store: SqlStore, dialect: str) -> None:
    """A dialect class promises that dialect's capabilities: refuse another database."""
    if store.dialect != dialect:
        store.close()
        raise StoreError(f"a {dialect} store was given a {store.dialect} URL",
                         path=f"stores.{store.name}.url")
