"""Partition-aware retention on PostgreSQL: whole partitions past retention are detached
and dropped (archived first under an archive rule), never one a hold reaches into; the
rest goes through row batches. A run killed at any instant loses no row and archives
none twice."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lethe.clock import Clock
from lethe.engine.archive import ArchiveSink, restore
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.governance.check import check
from lethe.holds import parse_scope, place_hold
from lethe.policy.load import load_policy
from lethe.runtime import Runtime
from lethe.stores.base import FALSE as FALSE_CONDITION
from lethe.stores.base import TRUE
from lethe.stores.sql import normalize_url

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 1, 15, tzinfo=UTC)  # keep 90d: the cutoff is 2025-10-17


def _build(url: str, *, autovacuum: bool = True) -> sa.Engine:
    engine = sa.create_engine(normalize_url(url))
    options = "" if autovacuum else " WITH (autovacuum_enabled = false)"
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE events (id bigint, workspace_id text, "
                             "at timestamptz NOT NULL) PARTITION BY RANGE (at)"))
        for month in range(1, 13):
            upper = "2026-01-01" if month == 12 else f"2025-{month + 1:02d}-01"
            conn.execute(sa.text(f"CREATE TABLE events_2025_{month:02d} PARTITION OF events "
                                 f"FOR VALUES FROM ('2025-{month:02d}-01') TO ('{upper}')"
                                 f"{options}"))
        conn.execute(sa.text("CREATE TABLE events_other PARTITION OF events DEFAULT"))
        conn.execute(sa.text(
            "INSERT INTO events SELECT g, CASE WHEN g % 50 = 0 THEN 'ws_legal' ELSE 'ws_a' END,"
            " TIMESTAMPTZ '2025-01-01' + (g % 8760) * INTERVAL '1 hour'"
            " FROM generate_series(1, 26280) g"))
    return engine


def _policy(tmp_path: Path, url: str, **events: object) -> Path:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Test Co", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}, "cold": {"url": f"file://{tmp_path / 'cold'}"}},
        "datasets": {"events": {"store": "app", "table": "events", "key": "id",
                                "class": "behavioral", "workspace": "workspace_id",
                                "retention": [{"keep": "90d", "after": "at"}], **events}}}))
    return path


def _count(engine: sa.Engine, where: str = "TRUE") -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM events WHERE {where}"))
                   .scalar_one())


def _partitions(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass")).scalars())


CUTOFF = "at < TIMESTAMPTZ '2025-10-17'"


def test_expired_partitions_are_dropped_and_the_rest_batched(postgres_url: str,
                                                             tmp_path: Path) -> None:
    engine = _build(postgres_url)
    due, total = _count(engine, CUTOFF), _count(engine)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url)), Clock(NOW))
    assert not [f for f in check(rt.catalog).findings if f.code == "undeclared-table"]
    [planned] = build_plan(rt).actions
    assert planned.rows == due
    assert planned.as_dict()["path"] == "partitions" and planned.partitions == 9  # Jan-Sep
    [done] = execute(rt, build_plan(rt), batch_size=500).actions
    assert done.done == due and done.verified is True
    assert done.estimated is False and "estimated" not in done.as_dict()  # counted
    assert _count(engine, CUTOFF) == 0 and _count(engine) == total - due
    assert _partitions(engine) == ["events_2025_10", "events_2025_11", "events_2025_12",
                                   "events_other"]
    [entry] = _audit(rt, "partitions.dropped")
    assert entry["estimated"] is False and len(entry["partitions"]) == 9
    assert 0 < entry["rows"] <= due  # the rest of the due rows went in batches
    rt.close()


def test_a_detach_that_waits_too_long_leaves_the_rows_to_batches(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The application holds a lock on the parent: the DETACH gives up after the lock
    timeout instead of queueing every query behind it, and the rows go in batches."""
    monkeypatch.setattr("lethe.stores.sql.PARTITION_LOCK_TIMEOUT", "200ms")
    engine = _build(postgres_url)
    due, total = _count(engine, CUTOFF), _count(engine)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url)), Clock(NOW))
    with engine.connect() as reader:  # a long read: ACCESS SHARE on the parent
        reader.execute(sa.text("SELECT count(*) FROM events"))
        [done] = execute(rt, build_plan(rt), batch_size=500).actions
        reader.rollback()
    assert done.error is None and done.done == due and done.verified is True
    assert "lock timeout" in done.as_dict()["partitions_stopped"]  # the run says why
    assert _count(engine, CUTOFF) == 0 and _count(engine) == total - due
    assert len(_partitions(engine)) == 13  # none dropped
    assert not _audit(rt, "partitions.dropped")
    rt.close()


def test_names_with_a_percent_sign_are_sent_as_written(postgres_url: str) -> None:
    """Partition SQL is sent without parameters: the driver must not read `%d` in a
    quoted name as a placeholder (nor turn `%%` into `%`, naming another partition)."""
    from lethe.stores.sql import SqlStore

    engine = sa.create_engine(normalize_url(postgres_url))
    with engine.begin() as conn:
        conn.execute(sa.text('CREATE TABLE "ev%d" (id bigint, at timestamptz NOT NULL) '
                             "PARTITION BY RANGE (at)"))
        for name, low, high in (("ev%d_old", "2024-01-01", "2025-01-01"),
                                ("ev%%d_old", "2025-01-01", "2026-01-01")):
            conn.execute(sa.text(f'CREATE TABLE "{name}" PARTITION OF "ev%d" '
                                 f"FOR VALUES FROM ('{low}') TO ('{high}')"))
        conn.execute(sa.text('INSERT INTO "ev%d" VALUES (1, \'2024-06-01\'), '
                             "(2, '2025-06-01')"))
    store = SqlStore("app", postgres_url)
    assert sorted(p.name for p in store.partitions("ev%d", "at")) == ["ev%%d_old", "ev%d_old"]
    drops = store.drop_partitions("ev%d", ["ev%d_old"], lambda: FALSE_CONDITION)
    store.engine.dispose()
    assert drops.dropped == {"ev%d_old": (1, False)} and drops.stopped is None
    with engine.connect() as conn:
        left = conn.execute(sa.text('SELECT id FROM "ev%d"')).scalars().all()
    engine.dispose()
    assert left == [2]  # the other partition, `ev%%d_old`, is untouched


def test_a_hold_keeps_its_partition_whole_rows_path_instead(postgres_url: str,
                                                            tmp_path: Path) -> None:
    engine = _build(postgres_url)
    held = _count(engine, f"{CUTOFF} AND workspace_id = 'ws_legal'")
    due = _count(engine, CUTOFF)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url)), Clock(NOW))
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, None, "ws_legal", None),
               "litigation")
    [planned] = build_plan(rt).actions
    assert planned.partitions == 0 and planned.held == held  # every old month has a held row
    [done] = execute(rt, build_plan(rt), batch_size=2000).actions
    assert done.done == due - held and done.verified is True
    assert _count(engine, CUTOFF) == held  # exactly the held rows are left
    assert len(_partitions(engine)) == 13
    rt.close()


def test_rules_the_partitions_cannot_express_use_rows(postgres_url: str,
                                                      tmp_path: Path) -> None:
    engine = _build(postgres_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, retention=[
        {"when": {"workspace_id": "ws_a"}, "keep": "90d", "after": "at"}])), Clock(NOW))
    [planned] = build_plan(rt).actions
    assert planned.as_dict()["path"] == "rows"
    execute(rt, build_plan(rt))
    assert len(_partitions(engine)) == 13
    assert _count(engine, f"{CUTOFF} AND workspace_id = 'ws_a'") == 0
    rt.close()


def test_only_the_partition_with_a_held_row_stays(postgres_url: str, tmp_path: Path) -> None:
    engine = _build(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO events VALUES (99999, 'ws_march', '2025-03-10')"))
    due = _count(engine, CUTOFF)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url)), Clock(NOW))
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, None, "ws_march", None),
               "case")
    [planned] = build_plan(rt).actions
    assert planned.partitions == 8 and planned.held == 1
    [done] = execute(rt, build_plan(rt), batch_size=2000).actions
    assert done.done == due - 1 and done.verified is True
    assert _count(engine, CUTOFF) == 1  # the held row, in its kept partition
    assert "events_2025_03" in _partitions(engine) and "events_2025_02" not in _partitions(engine)
    rt.close()


def _audit(rt: Runtime, action: str) -> list[dict[str, Any]]:
    audit = sa.Table("lethe_audit", sa.MetaData(), autoload_with=rt.control.engine)
    with rt.control.engine.connect() as conn:
        return [json.loads(d) for d in conn.execute(
            sa.select(audit.c.details).where(audit.c.action == action)
            .order_by(audit.c.seq)).scalars()]


def _reltuples(engine: sa.Engine, months: range) -> int:
    with engine.connect() as conn:
        return sum(int(conn.execute(sa.text(
            f"SELECT reltuples::bigint FROM pg_class WHERE oid = 'events_2025_{m:02d}'::regclass"
        )).scalar_one()) for m in months)


def test_estimate_mode_reports_the_planner_figure_and_says_so(postgres_url: str,
                                                              tmp_path: Path) -> None:
    engine = _build(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM events_2025_02 WHERE id % 3 = 0"))  # stale estimate
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE events"))
        conn.execute(sa.text("INSERT INTO events VALUES (70000, 'ws_a', '2025-02-03')"))
    estimate = _reltuples(engine, range(1, 10))
    due, total = _count(engine, CUTOFF), _count(engine)
    whole = _count(engine, "at < TIMESTAMPTZ '2025-10-01'")  # rows in the nine partitions
    assert estimate == whole - 1  # the row inserted after ANALYZE is not in the estimate
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url,
                                          partitions={"count": "estimate"})), Clock(NOW))
    [planned] = build_plan(rt).actions
    assert planned.rows == due and planned.partitions == 9  # the plan still counts
    result = execute(rt, build_plan(rt))
    [done] = result.actions
    assert done.verified is True and done.estimated is True
    assert done.as_dict()["estimated"] is True
    assert rt.control.run(result.run)["actions"][0]["estimated"] is True  # the run record
    assert done.done == estimate + (due - whole)  # plus October's rows, counted in batches
    assert _count(engine) == total - due  # every due row went, whatever the figure says
    [entry] = _audit(rt, "partitions.dropped")
    assert entry["estimated"] is True and entry["rows"] == estimate
    [step] = _audit(rt, "retention.delete")
    assert step["estimated"] is True and step["done"] == done.done
    rt.close()


def test_estimate_mode_counts_a_partition_never_analyzed(postgres_url: str,
                                                          tmp_path: Path) -> None:
    engine = _build(postgres_url, autovacuum=False)
    assert _reltuples(engine, range(1, 2)) == -1  # no estimate exists
    due = _count(engine, CUTOFF)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url,
                                          partitions={"count": "estimate"})), Clock(NOW))
    result = execute(rt, build_plan(rt))
    [done] = result.actions
    assert done.done == due and done.estimated is False and done.verified is True
    assert _audit(rt, "partitions.dropped")[0]["estimated"] is False
    assert rt.control.run(result.run)["actions"][0]["estimated"] is False
    rt.close()


def test_an_unknown_count_mode_is_a_policy_error(postgres_url: str, tmp_path: Path) -> None:
    from lethe.errors import PolicyError

    with pytest.raises(PolicyError, match="partitions"):
        load_policy(_policy(tmp_path, postgres_url, partitions={"count": "guess"}))


ARCHIVE = [{"keep": "90d", "after": "at", "action": "archive", "to": "cold"}]


def _chunks(tmp_path: Path) -> tuple[list[dict[str, Any]], set[str], set[str], list[int]]:
    """(manifests, chunk names, chunks marked done, archived ids in every chunk)."""
    root = tmp_path / "cold" / "lethe-archive" / "events"
    files = sorted(root.iterdir()) if root.exists() else []
    names = {f.name[:-len(".manifest.json")] for f in files if f.name.endswith(".manifest.json")}
    done = {f.name[:-len(".done")] for f in files if f.name.endswith(".done")}
    manifests = [json.loads((root / f"{n}.manifest.json").read_text()) for n in sorted(names)]
    ids = [json.loads(line)["id"] for f in files if f.name.endswith(".jsonl.gz")
           for line in gzip.decompress(f.read_bytes()).decode().splitlines()]
    return manifests, names, done, ids


def _ids(engine: sa.Engine, where: str) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(f"SELECT id FROM events WHERE {where} ORDER BY id"))
                    .scalars())


def test_archive_rule_archives_whole_partitions_then_drops_them(postgres_url: str,
                                                                tmp_path: Path) -> None:
    engine = _build(postgres_url)
    due_ids, total = _ids(engine, CUTOFF), _count(engine)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, retention=ARCHIVE)),
                      Clock(NOW))
    [planned] = build_plan(rt).actions
    assert planned.as_dict()["path"] == "partitions" and planned.partitions == 9
    [done] = execute(rt, build_plan(rt), batch_size=700).actions
    assert done.done == len(due_ids) and done.verified is True and not done.estimated
    assert _partitions(engine) == ["events_2025_10", "events_2025_11", "events_2025_12",
                                   "events_other"]
    assert _count(engine) == total - len(due_ids)
    manifests, names, marked, archived = _chunks(tmp_path)
    assert names == marked  # every chunk verified and marked done, no orphan
    assert sorted(archived) == due_ids  # every due row once, nothing else
    whole = [m for m in manifests if "partition" in m]
    assert {m["partition"] for m in whole} == {f"events_2025_{m:02d}" for m in range(1, 10)}
    assert all(m["rows"] <= 700 for m in manifests)
    assert _audit(rt, "partitions.dropped")[0]["action"] == "archive"
    back = restore(rt, "events")
    assert back.restored == len(due_ids) and _count(engine) == total
    rt.close()


def test_an_archived_partition_with_a_held_row_stays(postgres_url: str,
                                                      tmp_path: Path) -> None:
    engine = _build(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO events VALUES (99999, 'ws_march', '2025-03-10')"))
    due_ids = _ids(engine, CUTOFF)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, retention=ARCHIVE)),
                      Clock(NOW))
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, None, "ws_march", None),
               "case")
    [planned] = build_plan(rt).actions
    assert planned.partitions == 8 and planned.held == 1
    [done] = execute(rt, build_plan(rt), batch_size=2000).actions
    assert done.done == len(due_ids) - 1 and done.verified is True
    assert _ids(engine, CUTOFF) == [99999]  # the held row, in its kept partition
    assert "events_2025_03" in _partitions(engine)
    _manifests, names, marked, archived = _chunks(tmp_path)
    assert names == marked and sorted(archived) == [i for i in due_ids if i != 99999]
    rt.close()


def test_a_hold_placed_while_a_partition_is_archived_waits_for_its_commit(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hold placed from another thread while a partition's chunks are being written
    does not return until that partition's transaction has ended (the hold gate): the
    partition goes, archived whole, and every partition after it that the hold reaches
    stays. Nothing the hold covers is dropped after `place_hold` returned."""
    engine = _build(postgres_url)
    due_ids = _ids(engine, CUTOFF)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, retention=ARCHIVE)),
                      Clock(NOW))
    write, placer = ArchiveSink.write, []
    returned = threading.Event()
    seen_during_write: list[bool] = []

    def place() -> None:
        place_hold(rt.control, rt.audit, rt.clock,
                   parse_scope(rt.policy, None, "ws_legal", None), "case")
        returned.set()

    def write_then_hold(self: ArchiveSink, *args: Any, **kwargs: Any) -> None:
        write(self, *args, **kwargs)
        if not placer and kwargs.get("partition") == "events_2025_01":
            placer.append(threading.Thread(target=place))
            placer[0].start()
            returned.wait(1.0)  # it must not return while this partition is open
            seen_during_write.append(returned.is_set())

    monkeypatch.setattr(ArchiveSink, "write", write_then_hold)
    [done] = execute(rt, build_plan(rt), batch_size=500).actions
    placer[0].join(10)
    assert returned.is_set() and seen_during_write == [False] * len(seen_during_write)
    assert "events_2025_01" not in _partitions(engine)  # committed before the hold bound
    held = _ids(engine, f"{CUTOFF} AND workspace_id = 'ws_legal'")
    assert held and _ids(engine, CUTOFF) == held  # after the hold, only held rows stayed
    _manifests, names, marked, archived = _chunks(tmp_path)
    assert names == marked
    assert sorted(archived) == sorted(set(due_ids) - set(held))
    assert done.verified is True
    rt.close()


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs."""


def _run_until_killed(rt: Runtime, monkeypatch: pytest.MonkeyPatch, method: str,
                      dying: Callable[..., None]) -> None:
    """A run whose ArchiveSink `method` is replaced by `dying`, which raises Killed."""
    monkeypatch.setattr(ArchiveSink, method, dying)
    with pytest.raises(Killed):
        execute(rt, build_plan(rt), batch_size=500)
    rt.close()
    monkeypatch.undo()


def _finish_and_check(tmp_path: Path, url: str, engine: sa.Engine,
                      due_ids: list[int]) -> None:
    rt = Runtime.open(load_policy(_policy(tmp_path, url, retention=ARCHIVE)), Clock(NOW))
    [done] = execute(rt, build_plan(rt), batch_size=500).actions
    assert done.verified is True
    assert _ids(engine, CUTOFF) == []
    _manifests, names, marked, archived = _chunks(tmp_path)
    assert names == marked  # no orphan survives
    assert sorted(archived) == due_ids  # nothing lost, nothing twice
    rt.close()


def test_killed_while_archiving_a_partition_the_next_run_removes_its_chunks(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _build(postgres_url)
    due_ids, total = _ids(engine, CUTOFF), _count(engine)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, retention=ARCHIVE)),
                      Clock(NOW))
    write, calls = ArchiveSink.write, []

    def dies_on_the_third(self: ArchiveSink, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        write(self, *args, **kwargs)
        if len(calls) == 3:
            raise Killed

    _run_until_killed(rt, monkeypatch, "write", dies_on_the_third)
    assert _count(engine) == total and len(_partitions(engine)) == 13  # rolled back
    _manifests, names, marked, _ = _chunks(tmp_path)
    assert len(names) == 3 and not marked  # three orphans, none marked
    _finish_and_check(tmp_path, postgres_url, engine, due_ids)


def test_killed_after_a_partition_dropped_the_next_run_marks_its_chunks(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _build(postgres_url)
    due_ids = _ids(engine, CUTOFF)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, retention=ARCHIVE)),
                      Clock(NOW))

    def dies(self: ArchiveSink) -> None:
        if self.pending:
            raise Killed

    _run_until_killed(rt, monkeypatch, "committed", dies)
    assert "events_2025_01" not in _partitions(engine)  # the drop committed ...
    _manifests, names, marked, archived = _chunks(tmp_path)
    assert names and not marked  # ... its chunks not yet marked: the only copy
    assert archived and not set(archived) & set(_ids(engine, "TRUE"))  # gone from the table
    _finish_and_check(tmp_path, postgres_url, engine, due_ids)


def test_settling_waits_for_a_partition_being_archived(postgres_url: str,
                                                      tmp_path: Path) -> None:
    """Another run holds the partition while it writes its chunks: settling must wait,
    and then find the partition gone (its chunks done), not take them for orphans."""
    import threading

    engine = _build(postgres_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, retention=ARCHIVE)),
                      Clock(NOW))
    store = rt.catalog.store_of("events")
    outcome: list[int] = []
    with engine.connect() as conn:
        transaction = conn.begin()
        conn.execute(sa.text("LOCK TABLE events_2025_01 IN EXCLUSIVE MODE"))
        settler = threading.Thread(target=lambda: outcome.append(
            store.count_in_partition_settled("events", "events_2025_01", TRUE)))
        settler.start()
        time.sleep(1.0)
        assert settler.is_alive() and not outcome  # waiting on the archiver's lock
        conn.execute(sa.text("ALTER TABLE events DETACH PARTITION events_2025_01"))
        conn.execute(sa.text("DROP TABLE events_2025_01"))
        transaction.commit()
    settler.join(timeout=30)
    assert outcome == [0]
    assert store.count_in_partition_settled("events", "events_2025_02", TRUE) > 0
    rt.close()


@pytest.mark.slow
def test_killed_archive_runs_on_partitions_lose_nothing_and_archive_nothing_twice(
        postgres_url: str, tmp_path: Path) -> None:
    engine = _build(postgres_url)
    due_ids = _ids(engine, CUTOFF)
    policy = _policy(tmp_path, postgres_url, retention=ARCHIVE)
    argv = [sys.executable, "-c", "from lethe.cli.app import main; main()", "run",
            "--policy", str(policy), "--now", NOW.isoformat(), "--batch-size", "100",
            "--json"]
    env = {**os.environ, "NO_COLOR": "1"}
    root = tmp_path / "cold" / "lethe-archive" / "events"

    def manifests() -> set[str]:
        return {f.name for f in root.iterdir()} if root.exists() else set()

    for wait_for in (15, 60):  # two kills, mid-partition, at different points
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env, cwd=tmp_path)
        seen, started = manifests(), time.monotonic()
        while len({n for n in manifests() - seen if n.endswith(".manifest.json")}) < wait_for:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() - started < 120
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    left_before = _ids(engine, CUTOFF)
    assert left_before  # the kills left work to do
    _manifests, names, marked, archived = _chunks(tmp_path)
    kept = set(left_before)
    assert set(due_ids) <= kept | set(archived)  # at every instant: in the table or a chunk
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    assert _ids(engine, CUTOFF) == []
    _manifests, names, marked, archived = _chunks(tmp_path)
    assert names == marked  # no orphan survives
    assert sorted(archived) == due_ids  # nothing lost, nothing archived twice
