"""The WAL writer woken while a page walk's batch runs (stores/sql/walwriter.py).

The nudge commits, asynchronously, transactions that hold an id, on a connection of its
own, only while a batch runs; it ends with the walk (or idles out, or dies with its
connection) and never changes the pooled connection it gives back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from lethe.stores.base import Delete, Older, Sweep
from lethe.stores.sql import SqlStore, normalize_url
from lethe.stores.sql import pages as page_walks
from lethe.stores.sql.walwriter import LogWriterNudge
from lethe.testing.rows import sweep_to_the_end
from tests.engine.test_block_walk import CUTOFF, LIMIT, ROWS, _build

pytestmark = pytest.mark.postgres


def _until(done: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _xid(engine: sa.Engine) -> int:
    """The server's next transaction id (reading it assigns none)."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")).scalar_one())


def _nudge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lethe-wal-nudge"]


def test_it_commits_only_while_a_batch_runs_and_leaves_its_connection_as_it_came(
        postgres_url: str) -> None:
    engine = sa.create_engine(normalize_url(postgres_url), pool_size=1, max_overflow=0)
    before = _xid(engine)
    nudge = LogWriterNudge(engine)
    time.sleep(0.05)
    assert nudge.nudges == 0  # no batch yet: nothing committed
    with nudge.during():
        assert _until(lambda: nudge.nudges >= 3)
    after_batch = nudge.nudges
    time.sleep(0.05)
    assert nudge.nudges <= after_batch + 1  # (one may have been under way)
    settled = nudge.nudges
    time.sleep(0.05)
    assert nudge.nudges == settled  # between batches it waits
    nudge.stop()
    assert not nudge.alive
    # each nudge was a transaction with an id: the server's counter moved past them all
    assert _xid(engine) - before >= settled
    with engine.connect() as conn:  # the pool's one connection, the nudge's before
        assert conn.execute(sa.text("SHOW synchronous_commit")).scalar_one() == "on"
    engine.dispose()


def test_it_ends_by_itself_when_no_batch_comes(postgres_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lethe.stores.sql.blocks.IDLE_SECONDS", 0.05)
    engine = sa.create_engine(normalize_url(postgres_url))
    nudge = LogWriterNudge(engine)
    assert _until(lambda: not nudge.alive)
    engine.dispose()


def test_a_nudge_whose_connection_dies_ends_quietly(postgres_url: str) -> None:
    engine = sa.create_engine(normalize_url(postgres_url))
    nudge = LogWriterNudge(engine)
    with nudge.during():
        assert _until(lambda: nudge.nudges >= 1)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        assert _until(lambda: not nudge.alive)  # ended, raising nothing into the walk
    nudge.stop()
    engine.dispose()


@pytest.mark.parametrize("durable", [False, True])
def test_a_walk_nudges_from_its_second_batch_and_stops_at_its_end(
        postgres_url: str, store: SqlStore, monkeypatch: pytest.MonkeyPatch,
        durable: bool) -> None:
    """One nudge per walk, from the second batch on (a one-batch walk starts none), still
    nudging when the walk ends, which stops it: no thread left behind."""
    engine = _build(postgres_url)
    made: list[LogWriterNudge] = []

    class Recorded(LogWriterNudge):
        def __init__(self, engine: sa.Engine) -> None:
            super().__init__(engine)
            made.append(self)

    monkeypatch.setattr(page_walks, "LogWriterNudge", Recorded)
    alive_in_batches: list[bool] = []
    page_batch = SqlStore._page_batch

    def watched(self: SqlStore, *args: object) -> object:
        alive_in_batches.append(bool(made) and made[-1].alive)
        return page_batch(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SqlStore, "_page_batch", watched)
    batches = sweep_to_the_end(store, Sweep("events", "id", Older("at", CUTOFF), Delete(),
                                            durable=durable), LIMIT)
    assert len(batches) > 3 and batches[-1].last
    assert len(made) == 1  # one for the walk, started by its second batch
    assert alive_in_batches[0] is False and all(alive_in_batches[2:])
    assert not made[0].alive and not _nudge_threads()  # the walk's end stopped it
    with engine.connect() as conn:  # the walk still took every due row and no other
        left = conn.execute(sa.text("SELECT count(*) FILTER (WHERE at < :c), count(*)"
                                    " FROM events"), {"c": CUTOFF}).one()
    assert tuple(left) == (0, ROWS // 3)
    engine.dispose()


def test_closing_the_store_stops_a_walk_left_part_way(postgres_url: str,
                                                      store: SqlStore) -> None:
    _build(postgres_url)
    sweep = Sweep("events", "id", Older("at", CUTOFF), Delete())
    first = store.sweep_batch(sweep, None, LIMIT)
    second = store.sweep_batch(sweep, first.upper, LIMIT)
    assert not second.last and _nudge_threads()
    store.close()
    assert not _nudge_threads()
