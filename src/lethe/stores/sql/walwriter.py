"""The WAL writer woken while a page walk's DELETE runs, so it writes the log on the
other core instead of the deleting backend writing it itself.

A page walk's batch deletes tens of thousands of rows in one statement, and logs
megabytes for them: a full image of each page it first touches after a checkpoint,
then a record per row. PostgreSQL's WAL writer writes that log in the background only
when something wakes it (an asynchronous commit, from any session) or every
`wal_writer_delay` (200 ms by default). A DELETE commits nothing until it ends, so
once it has filled the WAL buffers (`wal_buffers`: 4 MB with 128 MB of shared
buffers) the deleting backend stops to write the log itself, every few megabytes, on
the one core the walk runs on.

While a walk's batch runs, a connection of lethe's own commits an empty transaction
that holds a transaction id, asynchronously, every NUDGE_SECONDS: each commit wakes the
WAL writer, which writes what the DELETE has logged so far. Measured with a harness
alternating walks on fresh copies of bench/sweep.py's tables (PostgreSQL 15, half of
1 M rows due; medians of 4-6 trials), lethe's batches took 0.346 s against 0.445 s
without it in time order, 0.453 against 0.488 s and 0.477 against 0.515 s in two runs
in random order (the bench's figures: the README).

Costs: a transaction id per nudge (a few hundred a second while a batch runs, none
between walks: the thread waits, then ends once no batch has come for
`blocks.IDLE_SECONDS`) and one pooled connection. It reads and writes no row, its
errors end it and are ignored (it is only an optimisation), and its commits set
`synchronous_commit` for themselves only (`set_config(..., true)`), so the pooled
connection goes back as it came. Each nudge is an empty transaction in the log: a
logical-decoding consumer that does not skip empty transactions (PostgreSQL 15's
`pgoutput` does) sees them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lethe.stores.sql import blocks

NUDGE_SECONDS = 0.003  # between two wake-ups while a batch runs

# an asynchronous commit of a transaction with an id: it writes a commit record, and
# committing asynchronously wakes the WAL writer (PostgreSQL's XLogSetAsyncXactLSN)
_NUDGE = sa.text("SELECT set_config('synchronous_commit', 'off', true), pg_current_xact_id()")


class LogWriterNudge:
    """A thread that wakes PostgreSQL's WAL writer while a batch runs (see above)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._busy = threading.Event()  # set while a batch runs
        self._stopping = False
        self.nudges = 0  # commits made so far
        self._thread = threading.Thread(target=self._run, name="lethe-wal-nudge",
                                        daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Still taking batches (False once it idled out, failed or was stopped)."""
        return self._thread.is_alive() and not self._stopping

    @contextmanager
    def during(self) -> Iterator[None]:
        """Wake the WAL writer while the block (a batch) runs."""
        self._busy.set()
        try:
            yield
        finally:
            self._busy.clear()

    def stop(self) -> None:
        """End the thread (at the walk's end) and wait for it."""
        self._stopping = True
        self._busy.set()  # (wakes a waiting thread, which then sees it must stop)
        self._thread.join()

    def _run(self) -> None:
        try:
            with self._engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as conn:  # each nudge commits itself
                while self._busy.wait(blocks.IDLE_SECONDS) and not self._stopping:
                    conn.execute(_NUDGE)
                    self.nudges += 1
                    time.sleep(NUDGE_SECONDS)
        except Exception:  # whatever it was (a dropped connection, a server that
            return  # refuses it): an optimisation only, the walk goes on without it
