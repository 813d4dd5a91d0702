"""Block ranges: PostgreSQL batches that walk the table's pages instead of its key.

A raw `DELETE ... WHERE due` reads the heap once, in order. A key-range batch instead
walks the primary-key index over every key of its window and visits the heap in key
order, filtering away the rows that are not due; measured on PostgreSQL 15 with half of
2 M rows due, that costs a quarter of the raw DELETE's speed. A block range,
`ctid >= '(a,0)' AND ctid < '(b,0)'`, is a TID range scan (PostgreSQL 14+): each batch
reads its pages in order, as the raw DELETE's sequential scan does, and is still one
short transaction.

The walk covers the pages the table had when it began, so it always ends; on a table
laid out in time order (an append-only log: `pg_stats.correlation` of the rule's time
column at least 0.95, and an index on it) it stops a range past the page of the
newest due row, as a raw DELETE's index scan would, instead of reading the rest of the
table for nothing. A due row past that point, or one that lands behind the walk
meanwhile, is not seen: one an application inserts with an old time, or
one it updates (PostgreSQL writes the new version wherever there is room, possibly on a
page already walked). The run's verification re-counts the due rows and, if any are
left, a second sweep finds them by key (engine.execute), so the step still ends with
nothing due.

Bounds: a range is sized from the table's rows per page (the planner's estimate) to scan
about `limit` rows at first, then aimed at `limit` matching rows, never wider than
GROWTH times the first width (nor, under a time budget, than the pages holding twice
the rows aimed at). A page holds up to 291 rows, so a batch smaller than that
cannot be bounded by pages: such sweeps, and tables never analyzed, walk the key.

Time: a range's width follows its rows (`next_width`), and, where the sweep gives its
batches a time budget (`Sweep.seconds`, a retention run's `--batch-seconds`), the rows
a range aims at follow its time (`aimed`): doubled after a batch that committed within
half the budget, halved (never below the sweep's batch size) after one that took
longer than all of it. A batch's own cost (the hold check, the journal's commit to the
control store, three round trips: ~2 ms) is then spread over more rows than the batch
size would give it, while every transaction stays about as short as the budget says
(a grown range scans at most the pages that hold twice the rows it aims at: `widest`).

The pruner: a raw DELETE leaves its rows' space to be reclaimed by whoever reads the
pages next, and the step's verification re-count is that reader. When the table is
bigger than shared buffers, the pages have left memory by then: the re-count reads them
back and dirties them again (2.4 s after a 4.4 s raw DELETE of 4 M of 8 M rows). So
while the walk goes on, a second connection reads each range the walk has committed,
while its pages are still in memory, and PostgreSQL prunes them as it reads; the
re-count afterwards is cheap (0.25 s in the same case), and the walk uses the machine's
second core for it. Only then: a table that fits in shared buffers is still there for
the re-count, and a walk that stops where a table in time order has its last due row
leaves whole pages of dead rows behind it, which the re-count's index scan passes
quickly; in both, the pruner's reads only competed with the walk for the cores (1 M
rows: the batches 8-16% slower with it, the whole run no faster; 8 M rows in time
order: 0.3 s slower). The pruner is only ever a reader and only an optimisation: it
reads no row values, its errors are ignored, and the verification still counts every
row.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from lethe.stores.sql.windows import GROWTH

MAX_ROWS_PER_PAGE = 291  # PostgreSQL's MaxHeapTuplesPerPage for 8 KiB pages
FIRST_TID_RANGE_VERSION = (14,)  # TID range scans arrived in PostgreSQL 14


PRUNE_ABOVE = 1.0  # a walk prunes a table of more pages than this many shared buffers
MOST_GROWN = 64  # a time budget grows a batch to at most this many times the batch size


def aimed(aim: int, limit: int, seconds: float | None, took: float, matched: int) -> int:
    """The rows the next range aims at, after one that aimed at `aim` (`limit`: the
    sweep's batch size) matched `matched` rows in a transaction of `took` seconds, under
    a time budget of `seconds` a batch (None: none; every batch aims at `limit`)."""
    if not seconds:
        return limit
    if took > seconds:
        return max(limit, aim // 2)
    if took < seconds / 2 and matched >= aim // 2:  # a full batch, quick: grow
        return min(aim * 2, MOST_GROWN * limit)
    return aim


@dataclass(frozen=True)
class BlockSpan:
    pages: int  # the table's size in pages when the walk began: the walk ends there
    per_page: float  # rows per page, as the planner estimates them (at least 1)
    prune: bool = True  # read the committed ranges as the walk goes (the Pruner)

    def first_width(self, limit: int) -> int:
        """Pages that hold about `limit` rows."""
        return max(1, math.ceil(limit / self.per_page))

    def widest(self, limit: int, aim: int) -> int:
        """The widest range: GROWTH times the first (where few rows match), or the pages
        that hold twice the rows aimed at, if wider — never wider than that for a grown
        aim, so a sparse stretch cannot widen a range that a dense one then fills."""
        return max(GROWTH * self.first_width(limit), 2 * self.first_width(aim))

    def next_width(self, limit: int, width: int, matched: int, aim: int | None = None) -> int:
        """Aim the next range at `aim` matching rows (default `limit`, the batch size),
        given what the last one found."""
        aim = limit if aim is None else aim
        if matched <= 0:
            return min(max(width, 1) * 2, self.widest(limit, aim))
        return max(1, min(int(width * aim / matched), self.widest(limit, aim)))


def read_span(conn: Connection, quoted_table: str) -> BlockSpan | None:
    """The walk over an ordinary table's pages; None where block ranges do not apply:
    a server before 14, a partitioned table (a TID names a row within one partition
    only), a view, an empty table, or one never analyzed (its rows per page unknown)."""
    if conn.dialect.name != "postgresql" or \
            (conn.dialect.server_version_info or (0,)) < FIRST_TID_RANGE_VERSION:
        return None
    found = conn.execute(sa.text(
        "SELECT c.relkind, c.relpages, c.reltuples,"
        " pg_relation_size(c.oid) / current_setting('block_size')::int,"
        " (SELECT setting::bigint FROM pg_settings WHERE name = 'shared_buffers')"
        " FROM pg_class c WHERE c.oid = to_regclass(:name)"), {"name": quoted_table}).first()
    if found is None or found[0] != "r" or not found[3]:
        return None
    relpages, reltuples, pages = int(found[1]), float(found[2]), int(found[3])
    if relpages <= 0 or reltuples <= 0:  # never analyzed: no rows per page to size by
        return None
    # shared_buffers is counted in pages; a table that fits stays there for the re-count
    return BlockSpan(pages, min(max(reltuples / relpages, 1.0), MAX_ROWS_PER_PAGE),
                     prune=found[4] is None or pages > PRUNE_ABOVE * int(found[4]))


IN_TIME_ORDER = 0.95  # pg_stats.correlation above which a table is laid out by time


def due_end(conn: Connection, table: sa.Table, quoted_table: str,
            time_column: sa.ColumnElement[Any], due: sa.ColumnElement[bool]) -> int | None:
    """Where the due rows end, for a table laid out in the order of its time column (an
    append-only log): one past the page of the newest due row, found through the
    column's index; None when the table is not in that order, or nothing is due. A walk
    can stop there, as a raw DELETE's index scan does; rows out of order past it are the
    verification's to find (see the module's docstring)."""
    correlation = conn.execute(sa.text(
        "SELECT correlation FROM pg_stats WHERE schemaname = current_schema()"
        " AND tablename = :table AND attname = :column"),
        {"table": table.name, "column": time_column.key}).scalar()
    if correlation is None or correlation < IN_TIME_ORDER:
        return None
    page = conn.execute(sa.select(sa.literal_column(
        f"({quoted_table}.ctid::text::point)[0]::bigint")).select_from(table).where(due)
        .order_by(time_column.desc()).limit(1)).scalar()
    return None if page is None else int(page) + 1


class _Tid(sa.types.UserDefinedType[str]):
    """PostgreSQL's `tid`: a page and a position on it."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "tid"


def in_pages(quoted_table: str, low: int | None = None, high: int | None = None) -> Any:
    """Rows on the pages from `lethe_low` up to (not including) `lethe_high` of the
    table whose name, quoted as PostgreSQL spells it, is `quoted_table` (SQLAlchemy
    escapes a `%` in it for the driver). Without `low` and `high` they are parameters
    whose values `pages(low, high)` gives when the statement runs: one statement built
    once serves every range of a walk."""
    ctid = sa.literal_column(f"{quoted_table}.ctid", _Tid())
    if low is None or high is None:  # required: a run without `pages` fails, never NULL
        first, end = sa.bindparam("lethe_low", type_=sa.String), \
            sa.bindparam("lethe_high", type_=sa.String)
    else:
        bounds = pages(low, high)
        first, end = sa.bindparam("lethe_low", bounds["lethe_low"], sa.String), \
            sa.bindparam("lethe_high", bounds["lethe_high"], sa.String)
    return sa.and_(ctid >= sa.cast(first, _Tid()), ctid < sa.cast(end, _Tid()))


def pages(low: int, high: int) -> dict[str, str]:
    """The parameters of `in_pages` for pages `low` to `high - 1`."""
    return {"lethe_low": f"({low},0)", "lethe_high": f"({high},0)"}


IDLE_SECONDS = 5.0  # a pruner whose walk stopped coming (it failed or was stopped) ends


class Pruner:
    """Reads the page ranges a block walk has committed, on a connection of its own, so
    PostgreSQL prunes the deleted rows while the pages are in memory (see above)."""

    def __init__(self, engine: Engine, table: str, quoted_table: str,
                 first: tuple[int, int]) -> None:
        # built once: every range is read by the same statement
        self._count = sa.select(sa.func.count()).select_from(sa.table(table)) \
            .where(in_pages(quoted_table))
        self._engine = engine
        self._ranges: queue.Queue[tuple[int, int] | None] = queue.Queue()
        self._ranges.put(first)  # before the thread starts: it cannot idle out first
        self._open = True  # False once it idled out: it takes no more ranges
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="lethe-pruner", daemon=True)
        self._thread.start()

    def committed(self, low: int, high: int) -> bool:
        """Pages `low` to `high - 1` hold only committed deletions now: read them. False
        if this pruner has idled out (a batch took longer than IDLE_SECONDS): the range
        was not taken, and the walk needs a pruner of its own again."""
        with self._lock:
            if self._open:
                self._ranges.put((low, high))
            return self._open

    def finish(self) -> None:
        """Wait until every range handed over has been read."""
        self._ranges.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            with self._engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as conn:  # no snapshot held between reads
                while True:
                    try:
                        taken = self._ranges.get(timeout=IDLE_SECONDS)
                    except queue.Empty:
                        with self._lock:  # a range handed over meanwhile is still read
                            if self._ranges.empty():
                                self._open = False
                                return
                        continue
                    if taken is None:
                        return
                    conn.execute(self._count, pages(*taken))
        except SQLAlchemyError:
            return  # an optimisation only: the walk and its verification go on without it
