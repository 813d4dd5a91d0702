"""Page walks: the batches of a PostgreSQL delete that walks the table's pages
(`blocks.py` says why, and how ranges are sized and pruned).

A plain delete's batch is one statement built once per shape of its condition and run
for every range with the range's pages as parameters: building and keying a new
statement tree for each of a walk's hundreds of batches cost more Python time than
its round trip, and at 1 M rows in 10,000-row batches the walk spends as much CPU in
lethe as in PostgreSQL, on the same two cores.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lethe.stores.base import BatchResult, Delete, Sweep, Value
from lethe.stores.sql.blocks import (
    MAX_ROWS_PER_PAGE,
    BlockSpan,
    Pruner,
    aimed,
    due_end,
    in_pages,
    pages,
    read_span,
)
from lethe.stores.sql.effects import Effects
from lethe.stores.sql.walwriter import LogWriterNudge


class PageWalks(Effects):
    """Batches over page ranges for `Sweeps` (a mixin of `SqlStore`)."""

    def _page_batch(self, sweep: Sweep, low: int, limit: int, blocks: BlockSpan) -> BatchResult:
        """One batch of a page walk from page `low`, in one transaction: journaled
        before it commits (raising rolls it back), then its range handed to the walk's
        pruner; the next range's width follows from what this one matched."""
        aim = limit if low == 0 else self._aims.get(sweep.table, limit)
        width = blocks.first_width(limit) if low == 0 \
            else self._widths.get(sweep.table, blocks.first_width(limit))
        upper = min(low + width, blocks.pages)
        cascaded: dict[str, int] = {}
        tallies: dict[Value, int] | None = None if sweep.tally is None else {}
        # a batch that reads rows into memory (cascades, tallies) goes in steps, and keeps
        # to the batch size whatever its time budget
        in_steps = bool(sweep.cascades) or sweep.tally is not None
        began = time.perf_counter()
        with self._errors(f"sweeping {sweep.table}"), \
                self._batch_transaction(sweep.durable) as (conn, unflushed), \
                self._log_written(low > 0):
            if in_steps:
                rows = self._pages_in_steps(conn, sweep, low, upper, cascaded, tallies)
            else:
                shape, values = self.shape(sweep.where, sweep.table)
                rows = int(conn.execute(self.shaped(
                    ("pages", sweep.table, shape), lambda: self._page_delete(sweep, shape)),
                    {**values, **pages(low, upper)}).rowcount)
            if sweep.journal is not None and (rows or any(cascaded.values())):
                sweep.journal(rows, cascaded)
        if unflushed is not None:
            self._unflushed.xid, self._unflushed.started = unflushed
        took = time.perf_counter() - began
        self._removed[sweep.table] = self._removed.get(sweep.table, 0) + rows
        aim = self._aims[sweep.table] = aimed(aim, limit, None if in_steps else sweep.seconds,
                                              took, rows)
        self._widths[sweep.table] = blocks.next_width(limit, upper - low, rows, aim)
        last = upper >= blocks.pages
        if last:
            self._stop_nudging()
        if blocks.prune:
            self._prune(sweep.table, low, upper, last)
        return BatchResult(upper, rows, cascaded, last, tallies or {})

    @contextmanager
    def _batch_transaction(self, durable: bool) -> Iterator[tuple[Connection,
                                                               tuple[int, Any] | None]]:
        """A batch's transaction, committed on leaving and rolled back on an error, and
        for a batch that need not be durable, (its transaction id, the server's start)
        once its synchronous commit is off (`asynchronous`). With psycopg both take one
        round trip instead of SQLAlchemy's two: the statement and `BEGIN` go as one
        simple query, and PostgreSQL makes the implicit transaction of a multi-statement
        query that reaches a `BEGIN` the transaction block that `BEGIN` opens, the
        statement before it included. A page walk's batch is then three round trips:
        this, its DELETE, its COMMIT. Other drivers go SQLAlchemy's way (a write
        transaction: on SQLite it takes the write lock up front), and on other databases
        every commit is as durable as they are set to make it."""
        if self.engine.dialect.driver != "psycopg":
            with self.engine.connect().execution_options(lethe_write=True) as conn, \
                    conn.begin():
                yield conn, None if durable or self.dialect != "postgresql" \
                    else asynchronous(conn)
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            try:  # (psycopg's rollback, on the pool's return, ends a transaction left open)
                if durable:
                    conn.exec_driver_sql("BEGIN")
                    unflushed = None
                else:
                    told = conn.exec_driver_sql(f"{_ASYNCHRONOUS.text}; BEGIN").one()
                    unflushed = (int(told[1]), told[2])
                yield conn, unflushed
            except BaseException:
                with suppress(sa.exc.SQLAlchemyError):
                    conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")

    @contextmanager
    def _log_written(self, nudged: bool) -> Iterator[None]:
        """While a batch runs, PostgreSQL's WAL writer woken to write what it logs
        (`walwriter.py`): from a walk's second batch on (a walk of one batch does not
        start a thread for it), once the batch's transaction has begun (so the batch
        has its pooled connection before a new nudge takes one)."""
        if not nudged:
            yield
            return
        nudge = self._nudge  # (one per store: another thread's walk may replace it)
        if nudge is None or not nudge.alive:  # none yet, or idled out
            nudge = self._nudge = LogWriterNudge(self.engine)
        with nudge.during():
            yield

    def _page_delete(self, sweep: Sweep, shape: Any) -> sa.Delete:
        """A plain delete's batch statement for a shape of its condition: its values and
        the range's pages are its parameters."""
        t = self.table(sweep.table)
        return sa.delete(t).where(in_pages(self._quoted(sweep.table)),
                                  self.build(shape, sweep.table, t))

    def _pages_in_steps(self, conn: Connection, sweep: Sweep, low: int, upper: int,
                        cascaded: dict[str, int], tallies: dict[Value, int] | None) -> int:
        """A batch of several statements over pages `low` to `upper - 1`
        (`Effects._apply_window`: children first, tallies read back). The rows deleted."""
        t = self.table(sweep.table)
        keys = self.key_of(t, sweep.key, sweep.table)
        in_window = sa.and_(in_pages(self._quoted(sweep.table), low, upper),
                            self.compile(sweep.where, sweep.table))
        return self._apply_window(conn, sweep, t, keys, keys[0], in_window, cascaded, tallies)

    def _block_span(self, sweep: Sweep, limit: int) -> BlockSpan | None:
        """Block ranges (PostgreSQL 14+, see `blocks.py`) for a walk that deletes: the
        heap read in order, as a raw DELETE reads it. Not for selective sweeps (an
        index finds their few rows), effects that read the rows they rewrite, or
        batches smaller than a page can hold."""
        if self.dialect != "postgresql" or sweep.selective or limit < MAX_ROWS_PER_PAGE \
                or not isinstance(sweep.effect, Delete):
            return None
        with self._reading(f"reading the size of {sweep.table}") as conn:
            span = read_span(conn, self._quoted(sweep.table))
            if span is None or sweep.time_column is None \
                    or not self.tables()[sweep.table].has_index_on(sweep.time_column):
                return span
            t = self.table(sweep.table)
            end = due_end(conn, t, self._quoted(sweep.table),
                          self.column(t, sweep.time_column, sweep.table),
                          self.compile(sweep.where, sweep.table))
        if end is None:
            return span
        # a range's margin: rows a little out of order are still walked, not swept; the
        # pages left behind are whole pages of dead rows, no pruner's work (blocks.py)
        return replace(span, pages=min(span.pages, end + span.first_width(limit)),
                       prune=False)

    def _prune(self, table: str, low: int, high: int, last: bool) -> None:
        """Hand a committed range to the table's pruner (blocks.py); at the walk's end,
        wait for it, so the verification that follows finds the pages pruned."""
        pruner = self._pruners.get(table)
        if pruner is None or not pruner.committed(low, high):  # none yet, or idled out
            pruner = self._pruners[table] = Pruner(self.engine, table, self._quoted(table),
                                                   (low, high))
        if last:
            del self._pruners[table]
            pruner.finish()


def asynchronous(conn: Connection) -> tuple[int, Any]:
    """Commit this transaction without waiting for the log; (its transaction id, the
    server's start): `flush` checks the last one survived."""
    told = conn.execute(_ASYNCHRONOUS).one()
    return int(told[1]), told[2]


_ASYNCHRONOUS = sa.text("SELECT set_config('synchronous_commit', 'off', true), txid_current(),"
                        " pg_postmaster_start_time()")
