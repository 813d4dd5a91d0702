"""The row store suite: counting a selection, sweeping it in batches, holds, crashes.

Tables are built with SQLAlchemy Core (a RowStore is SQL today) and read back with it
too, never through the store under test, so "nothing else touched" is checked by an
independent reader. Every table has an integer key `id`, a text `subject` and a
`created_at` instant; `CUTOFF` splits them into due and not due.
"""

from __future__ import annotations

import math
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
import sqlalchemy as sa

from lethe.stores.base import (
    CAPABILITIES,
    FALSE,
    TRUE,
    Archive,
    BatchResult,
    Cascade,
    Delete,
    In,
    Not,
    Older,
    RowStore,
    Store,
    Sweep,
    all_of,
    supports,
)
from lethe.stores.registry import open_store
from lethe.stores.sql.engine import create_sql_engine
from lethe.stores.sql.windows import GROWTH
from lethe.testing.backends import RowBackend
from lethe.testing.crash import due_sweep

NOW = datetime(2025, 6, 1, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=200)
HELD = 10_000  # values in the hold list of the hold test (thousands of subjects held)
Row = dict[str, Any]


def make_rows(ids: Iterable[int], subject: Callable[[int], str] = lambda i: f"s{i % 37}",
              age: Callable[[int], timedelta] | None = None) -> list[Row]:
    """Rows whose ages spread over 0-400 days (about half of them past CUTOFF)."""
    def spread(i: int) -> timedelta:
        return timedelta(days=(i * 37) % 400, minutes=i % 60)

    return [{"id": i, "subject": subject(i), "created_at": NOW - (age or spread)(i)}
            for i in ids]


def create_table(url: str, name: str, rows: Sequence[Row],
                 children: Sequence[Row] | None = None) -> None:
    """Table `name` with these rows; with `children`, also `NAME_items` (id, parent_id
    referencing `name`), so deleting a parent before its children fails. PostgreSQL
    tables are analyzed, as a live table is: the store reads the planner's figures."""
    engine = create_sql_engine(url)
    try:
        metadata = sa.MetaData()
        table = sa.Table(name, metadata,
                         sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
                         sa.Column("subject", sa.String(40), nullable=False),
                         sa.Column("created_at", sa.DateTime(timezone=True), nullable=False))
        items = None
        if children is not None:
            items = sa.Table(f"{name}_items", metadata,
                             sa.Column("id", sa.BigInteger, primary_key=True,
                                       autoincrement=False),
                             sa.Column("parent_id", sa.BigInteger,
                                       sa.ForeignKey(f"{name}.id"), nullable=False))
        with engine.begin() as conn:
            metadata.create_all(conn)
            if rows:
                conn.execute(sa.insert(table), list(rows))
            if items is not None and children:
                conn.execute(sa.insert(items), list(children))
            if conn.dialect.name == "postgresql":  # as a live table is: planner figures read
                conn.execute(sa.text(f"ANALYZE {conn.dialect.identifier_preparer.quote(name)}"))
    finally:
        engine.dispose()


def contents(url: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of `table` in key order, read without the store under test."""
    engine = create_sql_engine(url)
    try:
        with engine.connect() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            return [tuple(r) for r in conn.execute(sa.select(t).order_by(t.c.id))]
    finally:
        engine.dispose()


class CapableRowStore(RowStore, Store, Protocol):
    """A row store with the Store protocol's kind and capability flags."""


@contextmanager
def opened(url: str) -> Iterator[CapableRowStore]:
    """The row store at `url`, opened through the registry (after its tables exist:
    a store reads the schema once)."""
    store = open_store("conformance", url)
    assert isinstance(store, RowStore), f"{type(store).__name__} is not a RowStore"
    try:
        yield store
    finally:
        store.close()


def sweep_to_the_end(store: RowStore, sweep: Sweep, limit: int) -> list[BatchResult]:
    """Every batch of the sweep, the way the executor walks them."""
    batches: list[BatchResult] = []
    after = None
    while True:
        batch = store.sweep_batch(sweep, after, limit)
        if batch.upper is None:
            return batches
        batches.append(batch)
        if batch.last:
            return batches
        after = batch.upper


class RowStoreSuite:
    """Every RowStore adapter passes these. The caller provides `row_backend`."""

    def test_a_row_store_promises_what_the_executor_relies_on(
            self, row_backend: RowBackend) -> None:
        """Resumable runs need ordered keys; crash safety needs whole batches."""
        create_table(row_backend.url, "people", make_rows(range(1, 4)))
        with opened(row_backend.url) as store:
            assert isinstance(store, Store)
            assert store.kind == "sql"
            assert store.capabilities <= set(CAPABILITIES)
            assert {"transactional_batches", "ordered_keys"} <= store.capabilities
            assert set(store.tables()) == {"people"}
            assert store.tables()["people"].primary_key == ("id",)

    def test_the_count_of_a_selection_is_its_rows(self, row_backend: RowBackend) -> None:
        rows = make_rows(range(1, 501))
        create_table(row_backend.url, "people", rows)
        due = [r for r in rows if r["created_at"] < CUTOFF]
        picked = ("s1", "s2", "s3")
        in_picked = [r for r in rows if r["subject"] in picked]
        due_not_picked = [r for r in due if r["subject"] not in picked]
        assert 0 < len(due) < len(rows) and 0 < len(due_not_picked) < len(due)
        older = Older("created_at", CUTOFF)
        with opened(row_backend.url) as store:
            assert store.count("people", TRUE) == len(rows)
            assert store.count("people", older) == len(due)
            assert store.count("people", In("subject", picked)) == len(in_picked)
            assert store.count("people", all_of(older, Not(In("subject", picked)))) \
                == len(due_not_picked)
            assert store.count_each([("people", older), ("people", FALSE),
                                     ("people", In("id", (1, 2, 999)))]) == [len(due), 0, 2]

    @pytest.mark.parametrize("selective", [False, True], ids=["walk", "selective"])
    @pytest.mark.parametrize("limit", [7, 100])
    @pytest.mark.parametrize("layout", ["dense", "sparse"])
    def test_a_sweep_takes_every_due_row_and_nothing_else(
            self, row_backend: RowBackend, layout: str, limit: int, selective: bool) -> None:
        """All due rows go, every other row is untouched, batches come in key order,
        and each batch is bounded: at most `limit` rows when it finds its rows by key
        (sparse keys, selective sweeps), at most GROWTH x `limit` rows when it walks a
        dense key range, and every batch but the last covers `limit` rows or keys."""
        ids = list(range(1, 601)) if layout == "dense" else \
            [i * 1_000 + i % 7 for i in range(1, 601)]
        rows = make_rows(ids)
        create_table(row_backend.url, "events", rows)
        before = contents(row_backend.url, "events")
        due = {r["id"] for r in rows if r["created_at"] < CUTOFF}
        sweep = Sweep("events", "id", Older("created_at", CUTOFF), Delete(),
                      selective=selective)
        with opened(row_backend.url) as store:
            batches = sweep_to_the_end(store, sweep, limit)
            assert store.count("events", Older("created_at", CUTOFF)) == 0
        assert contents(row_backend.url, "events") == [r for r in before if r[0] not in due]
        assert sum(b.rows for b in batches) == len(due)
        uppers = [int(b.upper) for b in batches if b.upper is not None]
        assert uppers == sorted(set(uppers))  # ascending, no key window twice
        previous = min(ids) - 1
        for batch, upper in zip(batches, uppers, strict=True):
            covered = len([i for i in ids if previous < i <= upper])  # keys in its window
            assert batch.rows <= GROWTH * limit  # the hard bound on a transaction
            if batch is not batches[-1]:
                assert batch.rows >= limit or covered >= limit, "a batch made no headway"
            previous = upper
        if layout == "sparse" or selective:
            assert all(b.rows <= limit for b in batches)
            assert len(batches) == math.ceil(len(due) / limit)
        else:
            assert len(batches) <= math.ceil(len(ids) / limit)

    @pytest.mark.parametrize("column", ["id", "subject"])
    def test_held_rows_survive_a_sweep_excluding_ten_thousand_held_values(
            self, row_backend: RowBackend, column: str) -> None:
        """`Not(In(column, held))` with 10,000 held values (6,000 of them present):
        exactly the held rows are left."""
        rows = make_rows(range(1, 12_001), subject=lambda i: f"u{i}",
                         age=lambda i: timedelta(days=201 + i % 50))  # all due
        create_table(row_backend.url, "people", rows)
        kept = {i for i in range(1, 12_001) if i % 2 == 0}
        absent = range(100_001, 100_001 + HELD - len(kept))
        if column == "id":
            held: tuple[Any, ...] = (*sorted(kept), *absent)
        else:
            held = (*(f"u{i}" for i in sorted(kept)), *(f"x{i}" for i in absent))
        assert len(held) == HELD
        selection = all_of(Older("created_at", CUTOFF), Not(In(column, held)))
        with opened(row_backend.url) as store:
            assert store.count("people", selection) == len(rows) - len(kept)
            sweep_to_the_end(store, Sweep("people", "id", selection, Delete()), 1_000)
            assert store.count("people", In(column, held)) == len(kept)
        assert {r[0] for r in contents(row_backend.url, "people")} == kept

    @pytest.mark.parametrize("kill", ["between_batches", "anywhere"])
    def test_a_run_killed_part_way_and_run_again_ends_as_an_uninterrupted_run(
            self, row_backend: RowBackend, kill: str, tmp_path: Path) -> None:
        """A child process sweeps (parents with their items, as a cascade) and is killed
        with SIGKILL after some batches committed: once exactly between two batches, or
        five times at a random moment of a batch. Each time what it left is whole
        batches (every remaining parent has both its items, no item outlives its
        parent); run again, the tables equal those of a run never interrupted."""
        url = row_backend.url
        parents = make_rows(range(1, 2_001))
        items = [{"id": p["id"] * 10 + k, "parent_id": p["id"]} for p in parents
                 for k in (1, 2)]
        for name in ("crashed", "clean"):
            create_table(url, name, parents, items)
        due = sum(1 for p in parents if p["created_at"] < CUTOFF)
        limit, stall_after, rounds = (50, 3, 1) if kill == "between_batches" else (10, 0, 5)
        with opened(url) as store:
            sweep_to_the_end(store, due_sweep("clean", "clean_items", CUTOFF), limit)

        reported = 0
        for _ in range(rounds):
            lines = _killed_part_way(url, limit, stall_after, tmp_path)
            reported += sum(int(line.split()[2]) for line in lines
                            if line.startswith("batch "))
            with opened(url) as store:
                left = store.count("crashed", TRUE)
                gone = due - store.count("crashed", Older("created_at", CUTOFF))
                assert left == len(parents) - gone
                orphans = store.count("crashed_items", Not(In("parent_id", tuple(
                    r[0] for r in contents(url, "crashed")))))
                assert orphans == 0, "an item outlived its parent: a batch was not atomic"
                assert store.count("crashed_items", TRUE) == 2 * left, \
                    "items went without their parent: a batch was not atomic"
        if kill == "between_batches":
            assert gone == reported  # the three reported batches, whole, no more
        else:
            assert gone >= reported > 0  # a batch may commit before it is reported
        assert gone < due
        with opened(url) as store:
            sweep_to_the_end(store, due_sweep("crashed", "crashed_items", CUTOFF), limit)
        assert contents(url, "crashed") == contents(url, "clean")
        assert [r[1:] for r in contents(url, "crashed_items")] == \
            [r[1:] for r in contents(url, "clean_items")]
        assert len(contents(url, "clean")) == len(parents) - due

    def test_a_failed_batch_changes_nothing(self, row_backend: RowBackend) -> None:
        """transactional_batches: the cascade ran, then the effect failed: the batch's
        transaction takes the cascade back too."""
        parents = make_rows(range(1, 201))
        items = [{"id": p["id"] * 10 + 1, "parent_id": p["id"]} for p in parents]
        create_table(row_backend.url, "orders", parents, items)
        before = contents(row_backend.url, "orders"), contents(row_backend.url, "orders_items")

        def refuse(_columns: tuple[str, ...], _rows: list[tuple[Any, ...]]) -> None:
            raise RuntimeError("the archive refused the chunk")

        sweep = Sweep("orders", "id", Older("created_at", CUTOFF), Archive(refuse),
                      cascades=(Cascade("items", "orders_items", "id", "parent_id",
                                        Delete()),))
        with opened(row_backend.url) as store:
            assert supports(store, "transactional_batches")
            with pytest.raises(RuntimeError, match="refused"):
                store.sweep_batch(sweep, None, 50)
        assert (contents(row_backend.url, "orders"),
                contents(row_backend.url, "orders_items")) == before

    def test_tallies_count_each_subjects_rows(self, row_backend: RowBackend) -> None:
        """returning: the rows each batch took, per value of the tally column."""
        rows = make_rows(range(1, 601))
        create_table(row_backend.url, "events", rows)
        expected = Counter(r["subject"] for r in rows if r["created_at"] < CUTOFF)
        sweep = Sweep("events", "id", Older("created_at", CUTOFF), Delete(), tally="subject")
        with opened(row_backend.url) as store:
            if not supports(store, "returning"):
                pytest.skip(f"{type(store).__name__} does not claim `returning`")
            tallies: Counter[Any] = Counter()
            for batch in sweep_to_the_end(store, sweep, 64):
                assert sum(batch.tallies.values()) == batch.rows
                tallies.update(batch.tallies)
        assert tallies == expected

    def test_batches_that_need_not_be_durable_are_once_flushed(
            self, row_backend: RowBackend) -> None:
        """asynchronous_commit or not, `durable=False` batches then `flush` leave the
        same rows as durable ones, and a second flush has nothing to do."""
        rows = make_rows(range(1, 301))
        create_table(row_backend.url, "events", rows)
        kept = [r["id"] for r in rows if r["created_at"] >= CUTOFF]
        sweep = Sweep("events", "id", Older("created_at", CUTOFF), Delete(), durable=False)
        with opened(row_backend.url) as store:
            sweep_to_the_end(store, sweep, 40)
            store.flush()
            store.flush()
        assert [r[0] for r in contents(row_backend.url, "events")] == kept

    def test_range_partitions_are_listed_and_dropped_unless_held(
            self, row_backend: RowBackend) -> None:
        """drops_partitions: expired partitions go whole, one with a held row stays.
        Without the capability a store lists no partitions."""
        with opened_plain(row_backend.url) as store:
            if not supports(store, "drops_partitions"):
                create_table(row_backend.url, "events", make_rows(range(1, 11)))
                with opened(row_backend.url) as fresh:
                    assert fresh.partitions("events", "created_at") == []
                return
        _create_partitioned(row_backend.url)  # PostgreSQL declarative partitioning
        with opened(row_backend.url) as store:
            assert set(store.tables()) == {"ev"}  # partitions are not tables
            listed = store.partitions("ev", "created_at")
            assert [(p.name, p.upper) for p in listed] == [
                ("ev_2000", datetime(2001, 1, 1, tzinfo=UTC)),
                ("ev_2001", datetime(2002, 1, 1, tzinfo=UTC)),
                ("ev_rest", None)]
            drops = store.drop_partitions("ev", ["ev_2000", "ev_2001"],
                                          held=lambda: In("id", (15,)))
            assert drops.stopped is None
            assert drops.dropped == {"ev_2000": (10, False)}
            assert [p.name for p in store.partitions("ev", "created_at")] == \
                ["ev_2001", "ev_rest"]
            assert store.count("ev", TRUE) == 20
            assert store.count("ev", In("id", (15,))) == 1


@contextmanager
def opened_plain(url: str) -> Iterator[Store]:
    """The store at `url` before any table exists (for its flags only)."""
    store = open_store("conformance", url)
    try:
        yield store
    finally:
        store.close()


def _create_partitioned(url: str) -> None:
    engine = create_sql_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE ev (id bigint NOT NULL, created_at "
                                 "timestamptz NOT NULL) PARTITION BY RANGE (created_at)"))
            for name, low, high in (("ev_2000", "'2000-01-01+00'", "'2001-01-01+00'"),
                                    ("ev_2001", "'2001-01-01+00'", "'2002-01-01+00'"),
                                    ("ev_rest", "'2002-01-01+00'", "MAXVALUE")):
                conn.execute(sa.text(f"CREATE TABLE {name} PARTITION OF ev "
                                     f"FOR VALUES FROM ({low}) TO ({high})"))
            conn.execute(sa.text(
                "INSERT INTO ev SELECT i, CASE WHEN i <= 10 THEN timestamptz '2000-06-01+00' "
                "WHEN i <= 20 THEN timestamptz '2001-06-01+00' "
                "ELSE timestamptz '2024-06-01+00' END FROM generate_series(1, 30) AS i"))
    finally:
        engine.dispose()


def _killed_part_way(url: str, limit: int, stall_after: int, tmp_path: Path) -> list[str]:
    """Run the crash child on table `crashed` and SIGKILL it: once it stalled (between
    two batches) or, without a stall, at a random moment within a batch once three more
    batches were reported. Its output lines."""
    errors = (tmp_path / "crash-child.err").open("wb")
    child = subprocess.Popen(
        [sys.executable, "-m", "lethe.testing.crash", url, "crashed", "crashed_items",
         CUTOFF.isoformat(), str(limit), str(stall_after)],
        stdout=subprocess.PIPE, stderr=errors, env=dict(os.environ))
    try:
        def batches(count: int) -> Callable[[list[str]], bool]:
            return lambda lines: sum(line.startswith("batch ") for line in lines) >= count

        output = _Output(child)
        if stall_after:
            lines = output.until(lambda lines: "stalled" in lines)
        else:  # time one batch, then kill somewhere inside the next one
            output.until(batches(3))
            started = time.monotonic()
            lines = output.until(batches(4))
            time.sleep(random.uniform(0, time.monotonic() - started))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        errors.close()
    assert child.returncode == -signal.SIGKILL, (
        f"the child was not killed part way (exit {child.returncode}): "
        f"{(tmp_path / 'crash-child.err').read_text(errors='replace')[-2000:]}")
    return lines


class _Output:
    """A child's stdout, read unbuffered, as the complete lines so far."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        self.fd, self.buffer = child.stdout.fileno(), b""

    def until(self, enough: Callable[[list[str]], bool], timeout: float = 120) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.buffer.decode().split("\n")[:-1]
            if enough(lines):
                return lines
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the crash child said only {lines[-5:]} in {timeout}s")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise AssertionError(f"the crash child ended early; it said {lines[-5:]}")
                self.buffer += chunk
