"""Block walks (PostgreSQL 14+): retention deletes walk the table's pages, not its key.

They must take every due row and nothing else, keep each batch bounded, honour a hold
placed mid-walk, and leave no due row behind even when rows land behind the walk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from lethe.clock import Clock
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.errors import StoreError
from lethe.holds import parse_scope, place_hold
from lethe.policy.load import load_policy
from lethe.runtime import Runtime
from lethe.stores.base import Delete, Older, Sweep
from lethe.stores.sql import SqlStore, normalize_url
from lethe.stores.sql.blocks import MAX_ROWS_PER_PAGE
from lethe.stores.sql.windows import GROWTH
from lethe.testing.rows import sweep_to_the_end

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=30)
ROWS = 6_000
LIMIT = 300  # at least a page's worth of rows: block ranges apply
FIRST_KEY = 10**9  # keys far above any page number, so the two cannot be confused


def _build(url: str, *, analyze: bool = True, table: str = "events") -> sa.Engine:
    """ROWS rows, every third one recent, the rest due; workspace `ws_legal` on 1 in 20.
    Autovacuum is off for the table: only lethe reads its pages."""
    engine = sa.create_engine(normalize_url(url))
    quoted = f'"{table}"'
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {quoted} (id bigint PRIMARY KEY,"
                             " workspace_id text, at timestamptz NOT NULL, payload text)"
                             " WITH (autovacuum_enabled = false)"))
        conn.execute(sa.text(
            f"INSERT INTO {quoted} SELECT :first + g,"
            " CASE WHEN g % 20 = 0 THEN 'ws_legal' ELSE 'ws_a' END,"
            " :now - make_interval(days => CASE WHEN g % 3 = 0 THEN 1 ELSE 90 END),"
            " md5(g::text) FROM generate_series(1, :rows) g"),
            {"first": FIRST_KEY, "now": NOW, "rows": ROWS})
    if analyze:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"ANALYZE {quoted}"))
    return engine


def _ids(engine: sa.Engine, where: str = "TRUE", table: str = "events") -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(
            f'SELECT id FROM "{table}" WHERE {where}')).scalars())


def _pages(engine: sa.Engine, table: str = "events") -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT pg_relation_size(to_regclass(:t)) / current_setting('block_size')::int"),
            {"t": f'"{table}"'}).scalar_one())


def _unpruned(engine: sa.Engine, pages: int) -> int:
    """On the first `pages` pages of `events`: deleted rows whose space nobody has
    reclaimed yet, i.e. line pointers still in use (LP_NORMAL) by a tuple with a
    deleting transaction (pageinspect)."""
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
        conn.commit()
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM generate_series(0, :pages - 1) p,"
            " heap_page_items(get_raw_page('events', p::int)) i"
            " WHERE i.lp_flags = 1 AND i.t_xmax <> '0'"), {"pages": pages}).scalar_one())


@pytest.fixture
def pruning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Walks prune whatever the table's size (these tables fit in shared buffers, where
    a walk otherwise leaves the pruning to the verification: blocks.py)."""
    monkeypatch.setattr("lethe.stores.sql.blocks.PRUNE_ABOVE", 0.0)


@pytest.mark.parametrize("table", ["events", "Ev%d"])
def test_a_block_walk_takes_every_due_row_and_nothing_else(postgres_url: str,
                                                          store: SqlStore, table: str) -> None:
    engine = _build(postgres_url, table=table)
    due, kept = _ids(engine, f"at < '{CUTOFF.isoformat()}'", table), \
        _ids(engine, f"at >= '{CUTOFF.isoformat()}'", table)
    pages = _pages(engine, table)
    batches = sweep_to_the_end(store, Sweep(table, "id", Older("at", CUTOFF), Delete()),
                               LIMIT)
    assert _ids(engine, "TRUE", table) == kept  # every due row gone, the others untouched
    assert sum(b.rows for b in batches) == len(due)
    uppers = [int(b.upper) for b in batches if b.upper is not None]
    # the walk went by pages, not keys: ascending page bounds ending at the table's size
    assert uppers == sorted(set(uppers)) and uppers[-1] == pages < FIRST_KEY
    assert batches[-1].last
    assert all(b.rows <= GROWTH * LIMIT for b in batches)  # each transaction bounded
    assert len(batches) >= len(due) // (GROWTH * LIMIT)


def _unpruned_after(url: str, walk: Callable[[], None], attempts: int = 3) -> int:
    """Rows left unpruned by `walk` on a fresh table: 0 if one of `attempts` walks left
    none, else the last walk's count. PostgreSQL prunes a page only when no transaction
    in the whole cluster, in any database, is older than the deletion, so another
    process's transaction at that instant (an autovacuum ANALYZE) can keep a working
    pruner from pruning; a pruner that misses pages misses them on every attempt."""
    unpruned = -1
    for _ in range(attempts):
        engine = sa.create_engine(normalize_url(url))
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS events"))
        engine.dispose()
        engine = _build(url)
        pages = _pages(engine)
        walk()
        unpruned = _unpruned(engine, pages - 1)
        engine.dispose()
        if unpruned == 0:
            break
    return unpruned


@pytest.mark.alone  # pruning: see tests/conftest.py
@pytest.mark.usefixtures("pruning")
@pytest.mark.parametrize("walk", ["pages", "key"])
def test_the_pages_a_block_walk_deleted_from_are_pruned_by_its_end(
        postgres_url: str, store: SqlStore, walk: str) -> None:
    """The pruner reads each committed range while the walk goes on, so the space of
    every deleted row is reclaimed when the walk returns (a key walk leaves most of it
    to the next reader: the case that shows the check can fail). The last page is left
    out: it is not full, and PostgreSQL prunes only pages short of room."""
    sweep = Sweep("events", "id", Older("at", CUTOFF), Delete(), selective=walk == "key")
    unpruned = _unpruned_after(postgres_url, lambda: sweep_to_the_end(store, sweep, LIMIT))
    due = ROWS - ROWS // 3
    assert unpruned == 0 if walk == "pages" else unpruned > due // 2


@pytest.mark.alone  # pruning: see tests/conftest.py
@pytest.mark.usefixtures("pruning")
def test_a_walk_begun_again_after_stopping_part_way_still_prunes(
        postgres_url: str, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A walk stopped part way (a failed or stopped run) leaves its pruner to idle out;
    the next walk of the table gets a pruner of its own, not the idled one. (Pruning is
    checked before anything else reads the table: any scan would prune it too.)"""
    monkeypatch.setattr("lethe.stores.sql.blocks.IDLE_SECONDS", 0.05)
    sweep = Sweep("events", "id", Older("at", CUTOFF), Delete())

    def stopped_then_begun_again() -> None:
        first = store.sweep_batch(sweep, None, LIMIT)
        assert first.rows and not first.last
        time.sleep(0.5)  # the first walk's pruner has idled out
        sweep_to_the_end(store, sweep, LIMIT)

    assert _unpruned_after(postgres_url, stopped_then_begun_again) == 0
    assert not _ids(sa.create_engine(normalize_url(postgres_url)),
                    f"at < '{CUTOFF.isoformat()}'")


@pytest.mark.alone  # pruning: see tests/conftest.py
@pytest.mark.usefixtures("pruning")
def test_a_walk_slower_than_its_pruner_idles_still_prunes_every_page(
        postgres_url: str, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A walk whose batches come further apart than the pruner waits (a loaded machine)
    gets a new pruner for the ranges after: none is handed to a pruner that has ended."""
    monkeypatch.setattr("lethe.stores.sql.blocks.IDLE_SECONDS", 0.05)
    sweep = Sweep("events", "id", Older("at", CUTOFF), Delete())

    def slowly() -> None:
        after = None
        while True:
            batch = store.sweep_batch(sweep, after, LIMIT)
            if batch.upper is None or batch.last:
                return
            after = batch.upper
            time.sleep(0.2)  # longer than the pruner waits for the next range

    assert _unpruned_after(postgres_url, slowly) == 0
    assert not _ids(sa.create_engine(normalize_url(postgres_url)),
                    f"at < '{CUTOFF.isoformat()}'")


@pytest.mark.parametrize("case", ["small batches", "never analyzed", "selective"])
def test_where_pages_cannot_bound_a_batch_the_walk_goes_by_key(
        postgres_url: str, store: SqlStore, case: str) -> None:
    """A batch smaller than a page can hold, a table with no rows-per-page estimate and a
    selective sweep walk the key: the batch bounds are the keys' (limit rows at most)."""
    engine = _build(postgres_url, analyze=case != "never analyzed")
    with engine.connect() as conn:  # (autovacuum could analyze it meanwhile: no rows yet)
        assert conn.execute(sa.text(
            "SELECT reltuples FROM pg_class WHERE relname = 'events'")).scalar_one() \
            == (-1 if case == "never analyzed" else ROWS)
    limit = MAX_ROWS_PER_PAGE - 1 if case == "small batches" else LIMIT
    due = _ids(engine, f"at < '{CUTOFF.isoformat()}'")
    batches = sweep_to_the_end(store, Sweep("events", "id", Older("at", CUTOFF), Delete(),
                                            selective=case == "selective"), limit)
    assert not _ids(engine, f"at < '{CUTOFF.isoformat()}'")
    assert sum(b.rows for b in batches) == len(due)
    assert all(int(b.upper) > FIRST_KEY for b in batches if b.upper is not None)  # keys


def _policy(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Test Co", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}},
        "datasets": {"events": {"store": "app", "table": "events", "key": "id",
                                "class": "behavioral", "workspace": "workspace_id",
                                "retention": [{"keep": "30d", "after": "at"}]}}}))
    return path


def test_a_hold_placed_mid_walk_binds_at_the_next_batch(postgres_url: str,
                                                        tmp_path: Path) -> None:
    engine = _build(postgres_url)
    due = _ids(engine, f"at < '{CUTOFF.isoformat()}'")
    legal = _ids(engine, f"workspace_id = 'ws_legal' AND at < '{CUTOFF.isoformat()}'")
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url)), Clock(NOW))
    placed: list[int] = []

    def after_each_batch(_index: int, _rows: int) -> None:
        if not placed:  # after the first batch has committed
            placed.append(place_hold(rt.control, rt.audit, rt.clock,
                                     parse_scope(rt.policy, None, "ws_legal", None), "audit"))

    try:
        [done] = execute(rt, build_plan(rt), batch_size=LIMIT,
                         progress=after_each_batch).actions
    finally:
        rt.close()
    left = _ids(engine, f"at < '{CUTOFF.isoformat()}'")
    assert placed and done.verified
    assert left and left <= legal  # only held rows are left...
    assert len(legal - left) <= GROWTH * LIMIT  # ...and only the first batch took any
    assert done.done == len(due) - len(left)


def test_rows_that_land_behind_the_walk_are_found_and_taken(postgres_url: str,
                                                            tmp_path: Path) -> None:
    """Due rows written while the walk goes (here: new pages past the walk's end) are
    found by the verification's re-count and taken by a second sweep along the key: the
    step still ends verified, with every due row gone and counted."""
    engine = _build(postgres_url)
    due = len(_ids(engine, f"at < '{CUTOFF.isoformat()}'"))
    late = 2_000
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url)), Clock(NOW))
    written: list[int] = []

    def after_each_batch(_index: int, _rows: int) -> None:
        if written:
            return
        with engine.begin() as conn:  # more than the last page's room: new pages
            written.append(conn.execute(sa.text(
                "INSERT INTO events SELECT g, 'ws_a', :old, md5(g::text)"
                " FROM generate_series(1, :n) g"), {"old": NOW - timedelta(days=99),
                                                     "n": late}).rowcount)

    try:
        plan = build_plan(rt)
        [done] = execute(rt, plan, batch_size=LIMIT, progress=after_each_batch).actions
    finally:
        rt.close()
    assert written == [late]
    assert not _ids(engine, f"at < '{CUTOFF.isoformat()}'")
    assert done.verified and done.remaining == 0
    assert done.done == due + late > plan.actions[0].rows


LOG_ROWS = 20_000


def _build_log(url: str, stragglers: int) -> sa.Engine:
    """An append-only log: ids and times rise together, one row every 4 minutes up to
    NOW (46 % of them older than the 30 days kept), then `stragglers` rows appended out
    of order with an old time; analyzed, with an index on the time."""
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE events (id bigint PRIMARY KEY, workspace_id text,"
                             " at timestamptz NOT NULL, payload text)"
                             " WITH (autovacuum_enabled = false)"))
        conn.execute(sa.text(
            "INSERT INTO events SELECT g, 'ws_a', :now - (:rows - g) * interval '4 minutes',"
            " md5(g::text) FROM generate_series(1, :rows) g"), {"now": NOW, "rows": LOG_ROWS})
        conn.execute(sa.text(
            "INSERT INTO events SELECT :rows + g, 'ws_a', :old, md5(g::text)"
            " FROM generate_series(1, :n) g"),
            {"rows": LOG_ROWS, "old": NOW - timedelta(days=90), "n": stragglers})
        conn.execute(sa.text("CREATE INDEX events_at ON events (at)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE events"))
    return engine


def test_a_walk_over_a_log_stops_where_its_due_rows_end(postgres_url: str,
                                                        store: SqlStore) -> None:
    """In time order the walk stops a few ranges past the newest due row instead of
    reading the rest of the table; a row appended out of order past that point is left
    for the verification (next test)."""
    engine = _build_log(postgres_url, stragglers=3)
    pages = _pages(engine)
    due = _ids(engine, f"at < '{CUTOFF.isoformat()}'")
    stragglers = set(range(LOG_ROWS + 1, LOG_ROWS + 4))
    batches = sweep_to_the_end(store, Sweep("events", "id", Older("at", CUTOFF), Delete(),
                                            time_column="at"), LIMIT)
    walked = int(batches[-1].upper or 0)
    assert batches[-1].last and walked < pages * 3 // 4  # it did not read the tail
    assert _ids(engine, f"at < '{CUTOFF.isoformat()}'") == stragglers
    assert sum(b.rows for b in batches) == len(due) - len(stragglers)
    assert len(_ids(engine)) == LOG_ROWS + 3 - sum(b.rows for b in batches)


def test_rows_past_a_log_walks_end_are_swept_by_key(postgres_url: str,
                                                     tmp_path: Path) -> None:
    engine = _build_log(postgres_url, stragglers=3)
    due = len(_ids(engine, f"at < '{CUTOFF.isoformat()}'"))
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url)), Clock(NOW))
    try:
        [done] = execute(rt, build_plan(rt), batch_size=LIMIT).actions
    finally:
        rt.close()
    assert done.verified and done.remaining == 0 and done.done == due
    assert not _ids(engine, f"at < '{CUTOFF.isoformat()}'")


def test_a_block_walk_takes_each_due_rows_children_with_it(postgres_url: str,
                                                           tmp_path: Path) -> None:
    """Same-store children go in the parent's batch, found through the batch's page
    range: every due parent's children go, no other child; a parent with a held child
    stays (with its children)."""
    engine = _build(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE items (id bigint PRIMARY KEY, event_id bigint,"
                             " workspace_id text)"))
        conn.execute(sa.text(  # two children per event; the first event's are held
            "INSERT INTO items SELECT g, :first + (g + 1) / 2,"
            " CASE WHEN g <= 2 THEN 'ws_legal' ELSE 'ws_a' END"
            " FROM generate_series(1, :n) g"), {"first": FIRST_KEY, "n": 2 * ROWS})
        conn.execute(sa.text("UPDATE events SET workspace_id = 'ws_a'"))  # held: items only
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE events"))
        conn.execute(sa.text("ANALYZE items"))
    due = _ids(engine, f"at < '{CUTOFF.isoformat()}'")
    assert FIRST_KEY + 1 in due  # the first event is due, and its items are held
    path = _policy(tmp_path, postgres_url)
    policy = yaml.safe_load(path.read_text())
    policy["datasets"]["items"] = {"store": "app", "table": "items", "key": "id",
                                   "class": "behavioral", "workspace": "workspace_id",
                                   "belongs_to": {"events": "event_id"}}
    path.write_text(yaml.safe_dump(policy))
    rt = Runtime.open(load_policy(path), Clock(NOW))
    try:
        place_hold(rt.control, rt.audit, rt.clock,
                   parse_scope(rt.policy, None, "ws_legal", None), "audit")
        actions = execute(rt, build_plan(rt), batch_size=LIMIT).actions
    finally:
        rt.close()
    assert all(a.verified for a in actions)
    assert _ids(engine, f"at < '{CUTOFF.isoformat()}'") == {FIRST_KEY + 1}
    with engine.connect() as conn:
        parents = set(conn.execute(sa.text("SELECT event_id FROM items")).scalars())
        items = int(conn.execute(sa.text("SELECT count(*) FROM items")).scalar_one())
    assert parents == _ids(engine)  # no orphan, no child of a deleted event left
    assert items == 2 * len(_ids(engine))


def test_a_walk_runs_one_statement_for_all_its_ranges(
        postgres_url: str, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain delete's batches over pages are one statement built once and run with each
    range's pages as parameters (building a statement per batch cost more than its round
    trip); the walk still takes every due row and nothing else."""
    engine = _build(postgres_url)
    due = _ids(engine, f"at < '{CUTOFF.isoformat()}'")
    built: list[object] = []
    build = SqlStore._page_delete

    def counted(self: SqlStore, sweep: Sweep, shape: object) -> sa.Delete:
        built.append(shape)
        return build(self, sweep, shape)

    monkeypatch.setattr(SqlStore, "_page_delete", counted)
    ran: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda *args: ran.append(args[2]) if args[2].startswith("DELETE") else None)
    batches = sweep_to_the_end(store, Sweep("events", "id", Older("at", CUTOFF), Delete()),
                               LIMIT)
    assert len(built) == 1 and len(set(ran)) == 1 and len(ran) > 3  # one statement, many ranges
    assert not _ids(engine, f"at < '{CUTOFF.isoformat()}'") and due
    assert sum(b.rows for b in batches) == len(due)


@pytest.mark.parametrize("durable", [False, True])
def test_each_batch_of_a_walk_begins_as_its_sweep_asks(
        postgres_url: str, store: SqlStore, monkeypatch: pytest.MonkeyPatch,
        durable: bool) -> None:
    """A batch's transaction begins in one round trip with, for a sweep that need not be
    durable, its synchronous commit off and its own transaction id read: `flush` then
    checks the last batch's (a crash that lost it is told), not an earlier one's."""
    _build(postgres_url)
    seen: list[tuple[str, tuple[int, object] | None]] = []
    opened = SqlStore._batch_transaction

    @contextmanager
    def watched(self: SqlStore, durable_: bool) -> Iterator[tuple[sa.Connection, object]]:
        with opened(self, durable_) as (conn, unflushed):
            seen.append((conn.exec_driver_sql("SHOW synchronous_commit").scalar_one(),
                         unflushed))
            yield conn, unflushed

    monkeypatch.setattr(SqlStore, "_batch_transaction", watched)
    sweep_to_the_end(store, Sweep("events", "id", Older("at", CUTOFF), Delete(),
                                  durable=durable), LIMIT)
    assert len(seen) > 3
    if durable:
        assert seen == [("on", None)] * len(seen)
        return
    assert {setting for setting, _ in seen} == {"off"}
    xids = [told[0] for _, told in seen if told is not None]
    assert len(xids) == len(seen) and xids == sorted(set(xids))  # each its own, in order
    assert store._unflushed.xid == xids[-1]
    store.flush()
    assert store._unflushed.xid is None


def test_a_batch_that_finds_its_connection_gone_fails_in_one_line_and_the_next_works(
        postgres_url: str, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that dropped the walk's pooled connection (a restart, a terminated
    backend) between batches: the batch fails as a StoreError naming the store, and the
    lost connection is discarded, so the batch run again gets a fresh one and goes on."""
    monkeypatch.setattr("lethe.stores.sql.blocks.IDLE_SECONDS", 0.05)
    engine = _build(postgres_url)
    sweep = Sweep("events", "id", Older("at", CUTOFF), Delete(), durable=False)
    first = store.sweep_batch(sweep, None, LIMIT)
    assert first.rows and not first.last
    time.sleep(0.3)  # the walk's pruner idled out: its connection is back in the pool too
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        others = "FROM pg_stat_activity WHERE datname = current_database()" \
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) {others}"))
        for _ in range(100):  # (a terminated backend exits a moment later)
            if not conn.execute(sa.text(f"SELECT count(*) {others}")).scalar_one():
                break
            time.sleep(0.05)
    with pytest.raises(StoreError) as raised:
        store.sweep_batch(sweep, first.upper, LIMIT)
    assert "\n" not in str(raised.value) and raised.value.path == "stores.app"
    again = store.sweep_batch(sweep, first.upper, LIMIT)
    assert again.rows
