"""SQLite and PostgreSQL through SQLAlchemy Core.

Names come from the reflected schema (so they are real and get quoted by the
dialect); values are always bound parameters. Batches walk the key in order:
each one picks the next `limit` matching keys after the previous batch's last
key and applies the effect to that key window in one short transaction, so no
batch re-walks rows an earlier batch already removed.

One module per job (see `store.py` for how they fit); this package exports what
the rest of lethe uses, so callers import from `lethe.stores.sql` only.
"""

from lethe.stores.sql.compile import ARRAY_AFTER
from lethe.stores.sql.engine import create_sql_engine, describe_db_error, normalize_url
from lethe.stores.sql.partitions import PARTITION_LOCK_TIMEOUT, VERBATIM
from lethe.stores.sql.store import PostgresStore, SqliteStore, SqlStore

__all__ = [
    "ARRAY_AFTER",
    "PARTITION_LOCK_TIMEOUT",
    "VERBATIM",
    "PostgresStore",
    "SqlStore",
    "SqliteStore",
    "create_sql_engine",
    "describe_db_error",
    "normalize_url",
]
