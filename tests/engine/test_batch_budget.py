"""A retention run's time budget per batch (`--batch-seconds`), and when a page walk
prunes behind itself (issue 20).

A PostgreSQL page walk grows its batches past the batch size while each commits within
the budget, and only there; the rows taken are the same either way. A walk prunes the
pages it committed only where the verification could not do it cheaply itself: a table
bigger than shared buffers, not walked in time order.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from lethe.cli.app import app
from lethe.clock import Clock
from lethe.defaults import MOST_BATCH_SECONDS
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.errors import LetheError
from lethe.policy.load import load_policy
from lethe.runtime import Runtime
from lethe.stores.base import Delete, Older, Sweep
from lethe.stores.sql import SqlStore, normalize_url
from lethe.stores.sql.blocks import MOST_GROWN, BlockSpan, Pruner, aimed
from lethe.stores.sql.windows import GROWTH
from lethe.testing.rows import sweep_to_the_end

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=30)
ROWS = 12_000
LIMIT = 300  # at least a page's worth of rows: block ranges apply


# -- the rule ---------------------------------------------------------------------------
def test_without_a_budget_every_batch_aims_at_the_batch_size() -> None:
    assert aimed(4_000, 1_000, None, 0.0001, 4_000) == 1_000
    assert aimed(4_000, 1_000, 0.0, 0.0001, 4_000) == 1_000


def test_a_full_batch_well_within_the_budget_doubles_the_next() -> None:
    assert aimed(1_000, 1_000, 0.1, 0.01, 1_000) == 2_000
    assert aimed(2_000, 1_000, 0.1, 0.049, 1_990) == 4_000


def test_growth_stops_at_its_cap_and_where_the_batch_was_not_full() -> None:
    assert aimed(MOST_GROWN * 1_000, 1_000, 0.1, 0.001, 64_000) == MOST_GROWN * 1_000
    assert aimed(4_000, 1_000, 0.1, 0.001, 1_000) == 4_000  # few rows matched: not grown
    assert aimed(4_000, 1_000, 0.1, 0.07, 4_000) == 4_000  # past half the budget: kept


def test_a_batch_over_the_budget_halves_the_next_never_below_the_batch_size() -> None:
    assert aimed(8_000, 1_000, 0.1, 0.2, 8_000) == 4_000
    assert aimed(1_500, 1_000, 0.1, 0.2, 1_500) == 1_000


def test_a_sparse_stretch_widens_a_grown_range_to_twice_its_aim_at_most() -> None:
    """A range that found few due rows widens, but under a grown aim only to the pages
    holding twice the rows aimed at: a dense stretch after it then deletes at most that
    (8x the grown aim's pages would be 4x more, and far past the budget)."""
    span = BlockSpan(pages=10**7, per_page=100.0)
    aim = MOST_GROWN * 10_000
    assert span.next_width(10_000, 6_400, 10, aim) == 2 * span.first_width(aim)
    assert span.next_width(10_000, 6_400, 0, aim) == 2 * span.first_width(aim)
    # no budget: as before, GROWTH times the first range
    assert span.next_width(10_000, 100, 0) == 2 * 100
    assert span.next_width(10_000, 800, 1) == GROWTH * span.first_width(10_000)


# -- on PostgreSQL ----------------------------------------------------------------------
def _build(url: str, *, in_time_order: bool = False) -> sa.Engine:
    """ROWS rows, two thirds due (scattered, or the oldest first with an index on the
    time: an append-only log); analyzed; autovacuum off, so only lethe reads the pages."""
    engine = sa.create_engine(normalize_url(url))
    age = "CASE WHEN g <= :rows * 2 / 3 THEN 90 ELSE 1 END" if in_time_order \
        else "CASE WHEN g % 3 = 0 THEN 1 ELSE 90 END"
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz"
                             " NOT NULL, payload text) WITH (autovacuum_enabled = false)"))
        conn.execute(sa.text(
            f"INSERT INTO events SELECT g, :now - make_interval(days => {age}) + g * interval"
            " '1 second', md5(g::text) FROM generate_series(1, :rows) g"),
            {"now": NOW, "rows": ROWS})
        if in_time_order:
            conn.execute(sa.text("CREATE INDEX events_at ON events (at)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE events"))
    return engine


def _due(engine: sa.Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT id FROM events WHERE at < :c"),
                                {"c": CUTOFF}).scalars())


def _all(engine: sa.Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT id FROM events")).scalars())


@pytest.mark.postgres
def test_a_walk_with_room_in_its_budget_grows_its_batches_and_takes_the_same_rows(
        postgres_url: str, store: SqlStore) -> None:
    engine = _build(postgres_url)
    due, everything = _due(engine), _all(engine)
    batches = sweep_to_the_end(store, Sweep("events", "id", Older("at", CUTOFF), Delete(),
                                            seconds=60.0), LIMIT)
    assert _all(engine) == everything - due  # every due row gone, nothing else
    assert sum(b.rows for b in batches) == len(due)
    rows = [b.rows for b in batches]
    # each full batch aimed at twice the last: far fewer batches than the batch size gives
    assert max(rows) > 4 * LIMIT and len(batches) < len(due) // (2 * LIMIT)
    assert all(r <= 2 * MOST_GROWN * LIMIT for r in rows)


@pytest.mark.postgres
@pytest.mark.parametrize("seconds", [None, 1e-9])
def test_a_walk_without_a_budget_or_over_it_keeps_to_the_batch_size(
        postgres_url: str, store: SqlStore, seconds: float | None) -> None:
    engine = _build(postgres_url)
    due = _due(engine)
    batches = sweep_to_the_end(store, Sweep("events", "id", Older("at", CUTOFF), Delete(),
                                            seconds=seconds), LIMIT)
    assert sum(b.rows for b in batches) == len(due) and not _due(engine)
    assert len(batches) >= len(due) // (2 * LIMIT)
    assert all(b.rows <= 2 * LIMIT for b in batches[1:])  # aimed at LIMIT each time


@pytest.mark.postgres
def test_a_walk_that_reads_its_rows_keeps_to_the_batch_size_whatever_its_budget(
        postgres_url: str, store: SqlStore) -> None:
    """A batch that counts its rows per value (`tally`, RETURNING every row) holds them in
    memory: it is not grown."""
    engine = _build(postgres_url)
    due = _due(engine)
    batches = sweep_to_the_end(store, Sweep("events", "id", Older("at", CUTOFF), Delete(),
                                            tally="id", seconds=60.0), LIMIT)
    assert sum(b.rows for b in batches) == len(due) and not _due(engine)
    assert set().union(*(b.tallies for b in batches)) == due
    assert all(b.rows <= 2 * LIMIT for b in batches[1:])


def _pruners(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tables a Pruner is started for, from now on."""
    started: list[str] = []
    init = Pruner.__init__

    def counted(self: Pruner, engine: sa.Engine, table: str, *args: object) -> None:
        started.append(table)
        init(self, engine, table, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Pruner, "__init__", counted)
    return started


@pytest.mark.postgres
@pytest.mark.parametrize("prune_above", [1.0, 0.0])
def test_a_walk_prunes_behind_itself_only_a_table_bigger_than_shared_buffers(
        postgres_url: str, store: SqlStore, monkeypatch: pytest.MonkeyPatch,
        prune_above: float) -> None:
    """The test table fits in shared buffers: no pruner; counted as bigger (a share of
    0 of them), it gets one."""
    monkeypatch.setattr("lethe.stores.sql.blocks.PRUNE_ABOVE", prune_above)
    started = _pruners(monkeypatch)
    engine = _build(postgres_url)
    due = _due(engine)
    batches = sweep_to_the_end(store, Sweep("events", "id", Older("at", CUTOFF), Delete()),
                               LIMIT)
    assert sum(b.rows for b in batches) == len(due) and not _due(engine)
    assert started == ([] if prune_above else ["events"])


@pytest.mark.postgres
def test_a_walk_over_a_log_in_time_order_leaves_the_pruning_to_the_verification(
        postgres_url: str, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lethe.stores.sql.blocks.PRUNE_ABOVE", 0.0)  # big enough to prune
    started = _pruners(monkeypatch)
    engine = _build(postgres_url, in_time_order=True)
    due = _due(engine)
    batches = sweep_to_the_end(store, Sweep("events", "id", Older("at", CUTOFF), Delete(),
                                            time_column="at"), LIMIT)
    assert sum(b.rows for b in batches) == len(due) and not _due(engine)
    assert started == []


def _runtime(tmp_path: Path, url: str) -> Runtime:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "t", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}},
        "datasets": {"events": {"store": "app", "table": "events", "class": "operational",
                                "retention": [{"keep": "30d", "after": "at"}]}}}))
    return Runtime.open(load_policy(path), Clock(NOW))


@pytest.mark.postgres
@pytest.mark.parametrize("seconds", [0.0, MOST_BATCH_SECONDS])
def test_a_run_batches_as_its_budget_says_and_verifies_the_same(
        postgres_url: str, tmp_path: Path, seconds: float) -> None:
    """A run with no budget (0) takes a batch per batch size; one with room to spare
    fewer, bigger ones; both take every due row and verify it."""
    engine = _build(postgres_url)
    due = len(_due(engine))
    rt = _runtime(tmp_path, postgres_url)
    try:
        [done] = execute(rt, build_plan(rt), batch_size=LIMIT, batch_seconds=seconds).actions
    finally:
        rt.close()
    assert done.verified and done.done == due and not _due(engine)
    if seconds:
        assert done.batches < due // (2 * LIMIT)
    else:
        assert done.batches >= due // (2 * LIMIT)


@pytest.mark.postgres
def test_the_command_line_passes_its_budget_on_to_the_run(postgres_url: str,
                                                           tmp_path: Path) -> None:
    """`lethe run --batch-seconds 0` batches by `--batch-size`; the default grows them."""
    runs = {}
    for given in (["--batch-seconds", "0"], []):
        engine = _build(postgres_url)
        due = len(_due(engine))
        _runtime(tmp_path, postgres_url).close()  # writes the policy
        result = CliRunner().invoke(app, ["run", "--policy", str(tmp_path / "lethe.yaml"),
                                          "--batch-size", str(LIMIT), "--json",
                                          "--now", NOW.isoformat(), *given])
        assert result.exit_code == 0, result.output
        [action] = json.loads(result.stdout)["actions"]
        assert action["done"] == due and not _due(engine)
        runs[bool(given)] = action["batches"]
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE events"))
        engine.dispose()
    assert runs[True] >= due // (2 * LIMIT) > runs[False]


@pytest.mark.parametrize("seconds", [-0.1, MOST_BATCH_SECONDS + 0.5])
def test_a_budget_out_of_bounds_is_refused_before_anything_runs(
        tmp_path: Path, seconds: float) -> None:
    app_db = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with app_db.begin() as conn:
        conn.execute(sa.text("CREATE TABLE events (id INTEGER PRIMARY KEY, at TEXT)"))
    app_db.dispose()
    rt = _runtime(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    try:
        with pytest.raises(LetheError) as raised:
            execute(rt, build_plan(rt), batch_seconds=seconds)
    finally:
        rt.close()
    assert raised.value.path == "--batch-seconds"


@pytest.mark.parametrize("given", ["-1", "2.5"])
def test_the_command_line_refuses_a_budget_out_of_bounds(given: str) -> None:
    result = CliRunner().invoke(app, ["run", "--batch-seconds", given])
    assert result.exit_code == 2 and "--batch-seconds" in result.output
