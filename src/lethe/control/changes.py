"""A change marker for the holds of a SQLite control store, read without SQL.

Every batch of every sweep asks for the holds in force, under the hold gate
(lethe.holds.gate). Reading even the cheapest SQL mark (rows, highest id, released
rows) costs a transaction on the control store — ~0.3 ms, a sixteenth of a
10,000-row batch, and most of a run's time outside its batches at 8 M rows. So a
SQLite control store keeps, next to its database, a file that every placing or
release of a hold grows by one byte before its transaction and again after it commits:
the file's identity, size and modification time together move with every change, and
a reader compares them with one `stat`. Appends are atomic (`O_APPEND`), so two
changes at once still move the size twice.

Why both: a change marked before its commit moves the marker even if the process dies
before the second mark, so no reader keeps holds from before a committed change; the
mark after the commit moves it again for a reader that looked between the two (not one
under the hold gate: a hold is placed with the gate held exclusively, so no reader
under the gate runs between the two marks). A PostgreSQL control store has no file:
its readers read the SQL mark, as before.
"""

from __future__ import annotations

import os
from pathlib import Path

from lethe.errors import StoreError

Marker = tuple[int, int, int]  # (inode, size, modification time in ns); (0, 0, 0): no file


class HoldChanges:
    """The marker of a SQLite control store's holds (the database's path + ".holds-changes")."""

    def __init__(self, database: str) -> None:
        self.path = Path(os.path.abspath(database) + ".holds-changes")

    def marker(self) -> Marker:
        """Where the holds' changes stand now."""
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0, 0)
        except OSError as exc:
            raise StoreError(f"reading the holds' change marker: {exc.strerror}",
                             path="control") from None
        return (found.st_ino, found.st_size, found.st_mtime_ns)

    def mark(self) -> None:
        """Move the marker (before a change of the holds and after it commits). A marker
        that cannot move fails the change: readers would keep the holds they had."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, b".")
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"marking a change of the holds: {exc.strerror}",
                             path="control") from None
