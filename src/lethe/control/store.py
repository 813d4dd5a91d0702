"""The control store: lethe's own state (runs, holds) in SQLite or PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from lethe.control.schema import MIGRATIONS, holds, metadata, migrations_table, run_actions, runs
from lethe.control.tx import as_utc, joined, transaction
from lethe.errors import NotFound, StoreError
from lethe.stores.sql import create_sql_engine, describe_db_error
from lethe.stores.sql.engine import in_memory_sqlite


@dataclass(frozen=True)
class Hold:
    id: int
    scope_kind: str  # subject | workspace | dataset
    scope_value: str
    subject_kind: str | None
    reason: str
    placed_at: datetime
    placed_by: str
    released_at: datetime | None = None

    @property
    def scope(self) -> str:
        """`subject:KIND:KEY`, `workspace:ID` or `dataset:NAME` (only subject holds name
        a subject kind)."""
        return ":".join(p for p in (self.scope_kind, self.subject_kind, self.scope_value)
                        if p is not None)


# Statements every batch of every run executes, built once (on SQLite, building one
# costs more than executing it).
_PROGRESS = run_actions.update().where(
    run_actions.c.run_id == sa.bindparam("run_"),
    run_actions.c.position == sa.bindparam("position_")).values(
    done=run_actions.c.done + sa.bindparam("rows_"), batches=run_actions.c.batches + 1)
_HOLDS_MARK = sa.select(sa.func.count(), sa.func.max(holds.c.id),
                        sa.func.count(holds.c.released_at))
# _HOLDS_MARK as SQL text, for the driver's own connection (ControlStore._sqlite_mark)
_SQLITE_HOLDS_MARK = str(_HOLDS_MARK.compile(compile_kwargs={"literal_binds": True}))


def _older(mark: tuple[Any, ...], than: tuple[Any, ...]) -> bool:
    """Is a holds mark (rows, highest id, released rows) from before `than`? Rows and
    released rows only grow."""
    return (mark[0] or 0) <= (than[0] or 0) and (mark[2] or 0) <= (than[2] or 0) \
        and mark != than


_ALIVE = runs.update().where(runs.c.id == sa.bindparam("run_")).values(
    alive_at=sa.bindparam("at_"))


@dataclass(frozen=True)
class RunOwner:
    """The process carrying out a run: its machine's name and process id."""

    machine: str
    pid: int


@dataclass(frozen=True)
class OpenRun:
    id: int
    owner: RunOwner
    alive_at: datetime  # when it last recorded progress (or started)


class ControlStore:
    def __init__(self, url: str) -> None:
        if in_memory_sqlite(url):
            raise StoreError("an in-memory SQLite control store forgets holds and the audit "
                             "log; give a file or a server URL", path="control")
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = create_sql_engine(url, wal=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot open control store: {type(exc).__name__}",
                             path="control") from None
        self._active: tuple[tuple[Any, ...], tuple[Hold, ...]] | None = None
        self.migrate()

    def _tx(self, what: str, *, write: bool = True) -> AbstractContextManager[Connection]:
        return transaction(self.engine, what, write=write)

    def migrate(self) -> None:
        """Apply what is missing. An up-to-date store is only read: opening it never waits
        for another process's write lock (a locked store fails where it is written)."""
        if self._up_to_date():
            return
        with self._tx("migrating the control store") as conn:
            if conn.dialect.name == "postgresql":
                # Two processes starting at once must not both create the tables.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7263001)"))
            migrations_table.create(conn, checkfirst=True)
            applied = set(conn.execute(sa.select(migrations_table.c.version)).scalars())
            for version, name, step in MIGRATIONS:
                if version not in applied:
                    step(conn)
                    conn.execute(migrations_table.insert().values(
                        version=version, name=name, applied_at=datetime.now(UTC)))

    def _up_to_date(self) -> bool:
        with self._tx("reading the control store's migrations", write=False) as conn:
            if not sa.inspect(conn).has_table(migrations_table.name):
                return False
            applied = set(conn.execute(sa.select(migrations_table.c.version)).scalars())
        return all(version in applied for version, _, _ in MIGRATIONS)

    def schema_version(self) -> int:
        with self._tx("reading migrations", write=False) as conn:
            return int(conn.execute(sa.select(sa.func.max(migrations_table.c.version)))
                       .scalar() or 0)

    # -- holds ------------------------------------------------------------------------
    def place_hold(self, scope_kind: str, scope_value: str, subject_kind: str | None,
                   reason: str, placed_at: datetime, placed_by: str) -> int:
        with self._tx("placing a hold") as conn:
            return int(conn.execute(holds.insert().values(
                scope_kind=scope_kind, scope_value=scope_value, subject_kind=subject_kind,
                reason=reason, placed_at=placed_at, placed_by=placed_by)
                .returning(holds.c.id)).scalar_one())

    def release_hold(self, hold_id: int, released_at: datetime, released_by: str,
                     reason: str | None) -> Hold:
        with self._tx("releasing a hold") as conn:
            row = conn.execute(sa.select(holds).where(holds.c.id == hold_id)).first()
            if row is None or row.released_at is not None:
                raise NotFound(f"no active hold with id {hold_id}", path="hold")
            conn.execute(holds.update().where(holds.c.id == hold_id).values(
                released_at=released_at, released_by=released_by, release_reason=reason))
        return replace(self._hold(row), released_at=released_at)

    def holds(self, *, include_released: bool = False) -> list[Hold]:
        """Holds in force (or all). Active holds are read in full only when the table
        changed since the last read: every batch of every sweep asks, and ten thousand
        holds re-read per batch cost more than the batch. Holds are only ever inserted
        or released, never deleted or edited, so (rows, highest id, released rows)
        changes with every change; it is read in the same transaction as the holds.
        On SQLite the mark alone is first read as one statement on the driver's
        connection (one SELECT is its own snapshot): ~10 µs where a SQLAlchemy
        transaction took ~0.1-0.3 ms a batch; only a mark that moved reads the holds."""
        query = sa.select(holds).order_by(holds.c.id)
        if include_released:
            with self._tx("reading holds", write=False) as conn:
                return [self._hold(row) for row in conn.execute(query)]
        cached = self._active  # read once: other threads replace it meanwhile
        if cached is not None and self._sqlite_mark() == cached[0]:
            return list(cached[1])
        with self._tx("reading holds", write=False) as conn:
            mark = tuple(conn.execute(_HOLDS_MARK).one())
            cached = self._active
            if cached is None or cached[0] != mark:
                active = conn.execute(query.where(holds.c.released_at.is_(None)))
                cached = (mark, tuple(self._hold(row) for row in active))
                newest = self._active
                if newest is None or not _older(mark, newest[0]):
                    self._active = cached  # (a slower reader never puts older holds back)
            return list(cached[1])

    def _sqlite_mark(self) -> tuple[Any, ...] | None:
        """The holds' mark read as one statement on a pooled SQLite connection (the
        driver's autocommit: no BEGIN, no COMMIT); None elsewhere."""
        if self.engine.dialect.name != "sqlite":
            return None
        dbapi = self.engine.dialect.loaded_dbapi
        try:
            raw = self.engine.raw_connection()  # (a connection made now: the driver's error)
            try:
                with closing(raw.cursor()) as cursor:
                    cursor.execute(_SQLITE_HOLDS_MARK)
                    return tuple(cursor.fetchone() or ())
            finally:
                raw.close()
        except (dbapi.Error, SQLAlchemyError) as exc:
            failed = exc if isinstance(exc, SQLAlchemyError) else sa.exc.DBAPIError.instance(
                _SQLITE_HOLDS_MARK, None, exc, dbapi.Error)
            raise StoreError(describe_db_error(failed, "reading holds"),
                             path="control") from None

    @staticmethod
    def _hold(row: Any) -> Hold:
        return Hold(row.id, row.scope_kind, row.scope_value, row.subject_kind, row.reason,
                    as_utc(row.placed_at) or datetime.now(UTC), row.placed_by,
                    as_utc(row.released_at))

    # -- runs ---------------------------------------------------------------------------
    def start_run(self, now: datetime, actor: str, host: str, datasets: Sequence[str],
                  actions: Sequence[dict[str, Any]], *, owner: RunOwner,
                  conn: Connection | None = None) -> int:
        with joined(self.engine, conn, "recording a run") as conn:
            run_id = int(conn.execute(runs.insert().values(
                started_at=datetime.now(UTC), now=now, status="running", actor=actor,
                host=host, datasets=json.dumps(list(datasets)), machine=owner.machine,
                pid=owner.pid, alive_at=datetime.now(UTC)).returning(runs.c.id)).scalar_one())
            if actions:
                conn.execute(run_actions.insert(), [
                    {"run_id": run_id, "position": i, "done": 0, "batches": 0,
                     "longest_batch_ms": 0.0, **a} for i, a in enumerate(actions)])
        return run_id

    def record_action(self, run_id: int, position: int, *, conn: Connection | None = None,
                      **values: Any) -> None:
        with joined(self.engine, conn, "recording run progress") as conn:
            conn.execute(run_actions.update().where(
                run_actions.c.run_id == run_id, run_actions.c.position == position)
                .values(**values))

    def progress(self, run_id: int, rows: Mapping[int, int], *,
                 conn: Connection | None = None, alive: bool = True) -> None:
        """Add a unit of work's rows to the actions it touched (position -> rows, one
        batch each), before that work commits: the record may run one unit ahead of
        the data, never behind it. `alive`: also say the run's process is alive. Called
        for every batch: the statements are built once."""
        with joined(self.engine, conn, "recording run progress") as conn:
            conn.execute(_PROGRESS, [{"run_": run_id, "position_": position, "rows_": done}
                                     for position, done in rows.items()])
            if alive:
                conn.execute(_ALIVE, {"run_": run_id, "at_": datetime.now(UTC)})

    def finish_run(self, run_id: int, status: str, error: str | None = None, *,
                   conn: Connection | None = None, only_running: bool = False) -> bool:
        """Close the run; with `only_running`, only if nobody closed it first (False
        then)."""
        with joined(self.engine, conn, "finishing a run") as conn:
            update = runs.update().where(runs.c.id == run_id)
            if only_running:
                update = update.where(runs.c.status == "running")
            return bool(conn.execute(update.values(
                status=status, finished_at=datetime.now(UTC), error=error)).rowcount)

    def open_runs(self) -> list[OpenRun]:
        """Runs still marked `running`, oldest first."""
        with self._tx("listing open runs", write=False) as conn:
            rows = conn.execute(sa.select(runs.c.id, runs.c.machine, runs.c.pid,
                                          runs.c.alive_at, runs.c.started_at)
                                .where(runs.c.status == "running").order_by(runs.c.id))
            return [OpenRun(r.id, RunOwner(r.machine or "", r.pid or 0),
                            as_utc(r.alive_at) or as_utc(r.started_at) or datetime.now(UTC))
                    for r in rows]

    def recent_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest runs, newest first, without their actions."""
        with self._tx("listing runs", write=False) as conn:
            rows = conn.execute(sa.select(runs).order_by(runs.c.id.desc()).limit(limit))
            found = [dict(row._mapping) for row in rows]
        for record in found:
            record["datasets"] = json.loads(record["datasets"])
        return found

    def run(self, run_id: int) -> dict[str, Any]:
        with self._tx("reading a run", write=False) as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
            if row is None:
                raise NotFound(f"no run with id {run_id}", path="run")
            actions = conn.execute(sa.select(run_actions).where(run_actions.c.run_id == run_id)
                                   .order_by(run_actions.c.position)).mappings().all()
        record = dict(row._mapping)
        record["datasets"] = json.loads(record["datasets"])
        record["actions"] = [{**a, "blocked_by": json.loads(a["blocked_by"] or "{}")}
                             for a in actions]
        return record

    def close(self) -> None:
        self.engine.dispose()


__all__ = ["ControlStore", "Hold", "OpenRun", "RunOwner", "metadata"]
