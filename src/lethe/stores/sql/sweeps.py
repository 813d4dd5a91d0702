"""Sweeps: the one place a SQL store deletes, updates, anonymizes or archives rows.

Batches walk the table in order: each one picks the next `limit` matching keys after
the previous batch's last key (or, for dense integer keys, the next key range; see
`windows.py`; or, for a PostgreSQL delete that is not selective, the next range of
pages; see `blocks.py`) and applies the effect to that window in one short
transaction, cascades to child tables first, so no batch re-walks rows an earlier
batch already removed and a crash between batches leaves only whole batches done. A sweep that
need not be durable per batch commits without waiting for the log, and `flush`
makes sure those commits survived before anyone is told what went.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lethe.errors import StoreError
from lethe.stores.base import (
    Anonymize,
    Archive,
    BatchResult,
    Cascade,
    Delete,
    Effect,
    SetColumns,
    Sweep,
    Value,
    key_columns,
)
from lethe.stores.sql.blocks import (
    MAX_ROWS_PER_PAGE,
    BlockSpan,
    Pruner,
    due_end,
    in_pages,
    read_span,
)
from lethe.stores.sql.compile import Compiler, Shape
from lethe.stores.sql.values import bind_time, python_type
from lethe.stores.sql.windows import KeySpan, is_dense, next_width

# flushes the log (a synchronous commit of a transaction with an id); the batch's status
_FLUSH = sa.text("SELECT set_config('synchronous_commit', 'on', true), txid_current(),"
                 " txid_status(:x) AS status, pg_postmaster_start_time() AS started")
INVALID_PARAMETER_VALUE = "22023"  # txid_status of an id in the future


class Sweeps(Compiler):
    """The write side of `SqlStore`: `sweep_batch` and `flush`."""

    def key_of(self, t: sa.Table, key: str, table: str) -> list[sa.ColumnElement[Any]]:
        """The key's column(s): one, or a composite primary key's in order."""
        return [self.column(t, name, table) for name in key_columns(key)]

    def sweep_batch(self, sweep: Sweep, after: Value | None, limit: int) -> BatchResult:
        if self._in_one_statement(sweep):
            return self._delete_next(sweep, after, limit)
        t = self.table(sweep.table)
        keys = self.key_of(t, sweep.key, sweep.table)
        # a composite key walks as a row value: (a, b) > (x, y) orders as the index does
        key = keys[0] if len(keys) == 1 else sa.tuple_(*(_raw(keys, k) for k in keys))
        selected = self.compile(sweep.where, sweep.table)
        if after is None:
            stale = self._pruners.pop(sweep.table, None)
            if stale is not None:  # of a walk that stopped part way: let it finish its reads
                stale.finish()
            self._blocks[sweep.table] = self._block_span(sweep, limit)
            self._spans[sweep.table] = None if self._blocks[sweep.table] is not None \
                else self._dense_span(t, keys, sweep)
        span, blocks = self._spans.get(sweep.table), self._blocks.get(sweep.table)
        upper: Value
        with self._errors(f"sweeping {sweep.table}"), \
                self.engine.connect().execution_options(lethe_write=True) as conn, conn.begin():
            if not sweep.durable and self.dialect == "postgresql":
                # and its transaction id and the server's start: `flush` checks the last
                # one survived
                told = conn.execute(sa.text(
                    "SELECT set_config('synchronous_commit', 'off', true), txid_current(),"
                    " pg_postmaster_start_time()")).one()
                self._unflushed.xid, self._unflushed.started = int(told[1]), told[2]
            if blocks is not None:
                low = 0 if after is None else int(after)
                if low >= blocks.pages:
                    return BatchResult(None, 0)
                width = blocks.first_width(limit) if after is None \
                    else self._widths.get(sweep.table, limit)
                upper = min(low + width, blocks.pages)
                in_window = sa.and_(in_pages(self._quoted(sweep.table), low, upper), selected)
            elif span is not None:
                low = span.low - 1 if after is None else int(after)
                if low >= span.high:
                    return BatchResult(None, 0)
                width = limit if after is None else self._widths.get(sweep.table, limit)
                upper = min(low + width, span.high)
                in_window = sa.and_(key > low, key <= upper, selected)
            else:
                if after is not None:
                    selected = sa.and_(key > _bound(keys, after), selected)
                window = (sa.select(*(_raw(keys, k).label(f"k{i}") for i, k in enumerate(keys)))
                          .where(selected).order_by(*keys).limit(limit).subquery())
                ends = [window.c[f"k{i}"] for i in range(len(keys))]
                # ORDER BY ... DESC LIMIT 1, not max(): max() is undefined for uuid; the
                # count says whether the window was full, i.e. whether more may follow.
                found = conn.execute(sa.select(
                    *ends, sa.select(sa.func.count()).select_from(window).scalar_subquery())
                    .order_by(*(end.desc() for end in ends)).limit(1)).first()
                if found is None:
                    return BatchResult(None, 0)
                upper = found[0] if len(keys) == 1 else tuple(found[:len(keys)])
                last = found[len(keys)] < limit
                in_window = sa.and_(selected, key <= _bound(keys, upper))
            cascaded: dict[str, int] = {}
            if sweep.cascades:  # a composite key has no children: the policy says so
                parent_keys = sa.select(key).where(in_window)
                for cascade in sweep.cascades:
                    self._cascade(conn, cascade, parent_keys, cascaded)
            tallies: dict[Value, int] | None = None if sweep.tally is None else {}
            tally = None if sweep.tally is None else self.column(t, sweep.tally, sweep.table)
            rows = self._apply(conn, t, sweep.table, keys, in_window, sweep.effect,
                               tally, tallies)
            if sweep.journal is not None and (rows or any(cascaded.values())):
                sweep.journal(rows, cascaded)  # recorded first; raising rolls this back
        if isinstance(sweep.effect, Delete | Archive):
            self._removed[sweep.table] = self._removed.get(sweep.table, 0) + rows
        if blocks is not None:
            self._widths[sweep.table] = blocks.next_width(limit, int(upper) - low, rows)
            last = upper >= blocks.pages
            self._prune(sweep.table, low, int(upper), last)
        elif span is not None:
            self._widths[sweep.table] = next_width(limit, int(upper) - low, rows)
            last = upper >= span.high
        return BatchResult(upper, rows, cascaded, last, tallies or {})

    def _in_one_statement(self, sweep: Sweep) -> bool:
        """A selective delete by a single-column key with nothing to cascade (an erasure's
        sweep, on PostgreSQL): see `_delete_next`."""
        return self.dialect == "postgresql" and sweep.selective and not sweep.cascades \
            and isinstance(sweep.effect, Delete) and len(key_columns(sweep.key)) == 1

    def _delete_next(self, sweep: Sweep, after: Value | None, limit: int) -> BatchResult:
        """One round trip for a batch of a selective delete (most erasures are one batch
        per dataset, and many datasets hold no row of the subject): the window of the
        next `limit` matching keys, the DELETE of its rows and what the batch must tell
        are one statement — its own transaction when no journal must be written before
        it commits. It always answers one row: the window's last key in the database's
        order and its size (0: nothing left), the rows deleted, their tallies and, for a
        batch that need not be durable, its transaction id (the synchronous commit
        turned off for it). A row of the window that went meanwhile is simply not
        deleted; the next batch starts after the window either way.

        The statement is built once per shape of the sweep (`Compiler.shape`) and run
        again with the next subject's values: building and keying a new statement tree
        cost four times the round trip itself."""
        shape, values = self.shape(sweep.where, sweep.table)
        statement = self.shaped(("delete next", sweep.table, sweep.key, shape, sweep.tally,
                                  sweep.durable, after is None),
                                 lambda: self._delete_next_statement(sweep, shape,
                                                                     after is not None))
        values["lethe_limit"] = limit
        if after is not None:
            values["lethe_after"] = after
        options: dict[str, Any] = {"lethe_write": True}
        if sweep.journal is None:  # the statement is the transaction: no BEGIN, no COMMIT
            options["isolation_level"] = "AUTOCOMMIT"
        with self._errors(f"sweeping {sweep.table}"), \
                self.engine.connect().execution_options(**options) as conn, conn.begin():
            answered = conn.execute(statement, values).all()
            told_row = answered[0]
            rows = int(told_row.lethe_deleted)
            if not sweep.durable:
                self._unflushed.xid = int(told_row.lethe_xid)
                self._unflushed.started = told_row.lethe_started
            if sweep.journal is not None and rows:
                sweep.journal(rows, {})  # recorded first; raising rolls this back
        if not told_row.lethe_found:
            return BatchResult(None, 0)
        tallies: dict[Value, int] = {}
        if sweep.tally is not None and rows:
            _count_into(tallies, [row.lethe_tally for row in answered])
        self._removed[sweep.table] = self._removed.get(sweep.table, 0) + rows
        return BatchResult(told_row.lethe_upper, rows, {}, told_row.lethe_found < limit,
                           tallies)

    def _delete_next_statement(self, sweep: Sweep, shape: Shape,
                               after: bool) -> sa.Select[Any]:
        """`_delete_next`'s statement for a shape; its parameters are the shape's values,
        `lethe_limit` and (after the first batch) `lethe_after`."""
        t = self.table(sweep.table)
        key = self.column(t, sweep.key, sweep.table)
        selected = self.build(shape, sweep.table, t)
        if after:
            selected = sa.and_(key > sa.bindparam("lethe_after", type_=key.type), selected)
        window = sa.select(key.label("k")).where(selected).order_by(key) \
            .limit(sa.bindparam("lethe_limit", type_=sa.Integer)).cte("lethe_window")
        tally = sa.literal(None) if sweep.tally is None else \
            self.column(t, sweep.tally, sweep.table)
        # data-modifying WITH: PostgreSQL runs it once, to completion, read or not
        gone = sa.delete(t).where(key.in_(sa.select(window.c.k)), selected) \
            .returning(tally.label("t")).cte("lethe_gone")
        told = [sa.select(window.c.k).order_by(window.c.k.desc()).limit(1)
                .scalar_subquery().label("lethe_upper"),
                sa.select(sa.func.count()).select_from(window).scalar_subquery()
                .label("lethe_found"),
                sa.select(sa.func.count()).select_from(gone).scalar_subquery()
                .label("lethe_deleted")]
        if not sweep.durable:
            told += [sa.func.set_config("synchronous_commit", "off", True).label("lethe_sync"),
                     sa.func.txid_current().label("lethe_xid"),
                     sa.func.pg_postmaster_start_time().label("lethe_started")]
        statement = sa.select(*told)
        if sweep.tally is not None:  # one row per deleted row (or one, NULL, for none),
            # its tally in the column's own type (an array of citext or an enum would
            # reach Python as text); the counts repeat on each row
            one = sa.select(sa.literal(1).label("x")).subquery("lethe_one")
            statement = statement.add_columns(gone.c.t.label("lethe_tally")) \
                .select_from(one.outerjoin(gone, sa.true()))
        return statement

    def flush(self) -> None:
        """PostgreSQL: one synchronous commit of a transaction that takes an id (so it
        writes a commit record) flushes the log up to it, every earlier commit with it;
        then the last unflushed batch must be committed on the server as it is now. A
        server that crashed and came back in between (the pool reconnects quietly) has
        lost that batch: raise rather than let anyone audit or certify it — and a server
        started since that batch raises too (after a crash the batch's transaction id
        can be handed out again and read "committed" for another's work). The log
        replays in order, so the last batch surviving means all before it did. Both are
        one statement, its own transaction: its commit, synchronous, is the flush, and
        a server that fails before that commit fails the statement. SQLite commits as
        its journal settings say; nothing to do."""
        xid = getattr(self._unflushed, "xid", None)
        if self.dialect != "postgresql" or xid is None:
            return
        with self._errors("making deletions durable"), \
                self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            try:
                told = conn.execute(_FLUSH, {"x": xid}).one()
                status = told.status if told.started == getattr(
                    self._unflushed, "started", told.started) else None  # restarted
            except sa.exc.DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != INVALID_PARAMETER_VALUE:
                    raise
                status = None  # an id the server never saw: its log was lost
        if status != "committed":
            raise StoreError("the database lost its last deletions (did it crash or "
                             "restart?): nothing is audited or certified; run again",
                             path=f"stores.{self.name}")
        self._unflushed.xid = None

    def _block_span(self, sweep: Sweep, limit: int) -> BlockSpan | None:
        """Block ranges (PostgreSQL 14+, see `blocks.py`) for a walk that deletes: the
        heap read in order, as a raw DELETE reads it. Not for selective sweeps (an
        index finds their few rows), effects that read the rows they rewrite, or
        batches smaller than a page can hold."""
        if self.dialect != "postgresql" or sweep.selective or limit < MAX_ROWS_PER_PAGE \
                or not isinstance(sweep.effect, Delete):
            return None
        with self._errors(f"reading the size of {sweep.table}"), \
                self.engine.connect() as conn:
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
        # a range's margin: rows a little out of order are still walked, not swept
        return replace(span, pages=min(span.pages, end + span.first_width(limit)))

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

    def _dense_span(self, t: sa.Table, keys: list[sa.ColumnElement[Any]],
                    sweep: Sweep) -> KeySpan | None:
        """Key ranges for integer keys that are dense; None means use key windows."""
        if sweep.selective or isinstance(sweep.effect, Anonymize | Archive) \
                or len(keys) != 1 or python_type(keys[0].type) is not int:
            return None  # anonymizing reads every row anyway; windows bound it exactly
        key = keys[0]
        with self._errors(f"reading the key range of {sweep.table}"), \
                self.engine.connect() as conn:
            low, high = conn.execute(sa.select(sa.func.min(key), sa.func.max(key))).one()
            if low is None:
                return None
            if self.dialect == "postgresql":
                rows = self._estimated_rows(conn, sweep.table)  # -1 falls back to windows
            else:
                rows = int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
        span = KeySpan(int(low), int(high))
        return span if is_dense(span, rows) else None

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
        _count_into(tallies, returned)
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
        query = sa.select(*(_raw(keys, k) for k in keys), *columns,
                          *([] if tally is None else [tally])).where(where)
        if self.dialect == "postgresql":
            # Lock what we read: an application write in between must not be overwritten
            # with the anonymized old value (SQLite's write lock is already held).
            query = query.with_for_update(of=t)
        rows = conn.execute(query).all()
        if not rows:
            return 0
        if tally is not None and tallies is not None:
            _count_into(tallies, [row[-1] for row in rows])
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
        statement = sa.update(t).where(*(_raw(keys, k) == sa.bindparam(f"k_{i}")
                                         for i, k in enumerate(keys))).values(values)
        conn.execute(statement, params)
        return len(rows)


def _raw(keys: list[sa.ColumnElement[Any]], key: sa.ColumnElement[Any]) -> Any:
    """A composite key's column read as the database holds it, so that it binds back
    to exactly that (SQLite keeps a timestamp as text that need not be in SQLAlchemy's
    own format: a processed round trip would match nothing)."""
    return key if len(keys) == 1 else sa.type_coerce(key, sa.types.NullType())


def _bound(keys: list[sa.ColumnElement[Any]], value: Value) -> Any:
    """A key value to compare the key with: a composite key's as a row value, bound as
    read (`_raw`)."""
    return value if len(keys) == 1 else sa.tuple_(*(
        sa.literal(v, sa.types.NullType()) for v in value))


def _count_into(tallies: dict[Value, int], values: Sequence[Value]) -> None:
    for value in values:
        if value is not None:
            tallies[value] = tallies.get(value, 0) + 1
