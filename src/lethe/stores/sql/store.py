"""`SqlStore`: the RowStore over one SQLAlchemy engine, assembled from its parts.

Each part is a mixin over `SqlBase` (the engine and the shared caches) and lives in
the module named for its job; this module only puts them together, so the class a
caller opens is the whole store and the modules stay small:

    engine.SqlBase        the engine, its dialect, error translation, caches
    reflect.Schema        tables, columns, keys (reflected once)
    compile.Compiler      Condition trees as SQLAlchemy expressions
    rows.Rows             counts and reads; restoring archived rows
    partitions.Partitions listing, dropping and archiving range partitions
    sweeps.Sweeps         batched deletes, updates, anonymizing, archiving; flush
"""

from __future__ import annotations

from lethe.stores.sql.partitions import Partitions
from lethe.stores.sql.rows import Rows
from lethe.stores.sql.sweeps import Sweeps


class SqlStore(Rows, Partitions, Sweeps):
    """A RowStore over one SQLAlchemy engine (SQLite, PostgreSQL)."""
