"""Partition drop vs DELETE: retention on a range-partitioned PostgreSQL table.

Three tables hold the same rows (`--rows`, default 4,800,000, spread evenly over 24
months of `at`, so 200,000 a month): `events_exact` and `events_estimate`,
range-partitioned by month, and `events_flat`, a plain table with an index on `at`. The
policy keeps 12 months, so half the rows are due, exactly in the twelve oldest
partitions. Measured in this one run, each figure a ratio against the raw DELETE:

1. lethe `run` on `events_exact` with the default `partitions: {count: exact}`: each
   partition's rows are counted (a scan) before it is dropped;
2. lethe `run` on `events_estimate` with `partitions: {count: estimate}`: the row figure
   is the planner's estimate (`pg_class.reltuples`, set by VACUUM/ANALYZE), and the
   run says so (`"estimated": true`);
3. one raw `DELETE … WHERE at < cutoff` on the plain table (the fastest way to delete
   rows, no batching);
4. lethe `run` on the plain table (row batches), for reference;
5. the ceiling: a bare `DROP TABLE` of each due partition of a fourth identical table,
   nothing else. Dropping a partition costs what the filesystem takes to free its files
   (on a disk mounted with `discard`, like this project's test machine, that grows with
   the partition's size), so no tool can beat this figure.

`--tablespace NAME` builds everything in an existing tablespace (e.g. one on tmpfs:
`CREATE TABLESPACE shm LOCATION '/dev/shm/pgts'`) to measure without the disk's cost of
freeing files; `--label L` writes `bench/results/partitions-L.json`.

Run: `python bench/partitions.py [--rows N]` (about 4 minutes at the default size on
2 cores, most of it building the tables).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from common import drop_database, fresh_database, write_result

from lethe.clock import Clock
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.policy.load import load_policy
from lethe.runtime import Runtime
from lethe.stores.sql import normalize_url

DB = "lethe_bench_partitions"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
CUTOFF = "TIMESTAMPTZ '2025-01-01'"
TARGET = 100.0  # partition drop at least 100x a raw DELETE
PARTITIONED = ("events_exact", "events_estimate", "events_ceiling")
ROWS_SQL = ("SELECT g, 'page_view', TIMESTAMPTZ '2024-01-01' + ((g - 1)::float / :rows) "
            "* INTERVAL '731 days' AS at FROM generate_series(1, :rows) g")


def build_one(engine: sa.Engine, table: str, rows: int) -> None:
    with engine.begin() as conn:
        if table in PARTITIONED:
            conn.execute(sa.text(f"CREATE TABLE {table} (id bigint NOT NULL, kind text, "
                                 "at timestamptz NOT NULL) PARTITION BY RANGE (at)"))
            for index in range(24):
                year, month = 2024 + index // 12, 1 + index % 12
                upper = f"{year + (month == 12)}-{1 if month == 12 else month + 1:02d}-01"
                conn.execute(sa.text(
                    f"CREATE TABLE {table}_{year}_{month:02d} PARTITION OF {table} "
                    f"FOR VALUES FROM ('{year}-{month:02d}-01') TO ('{upper}')"))
        else:
            conn.execute(sa.text(f"CREATE TABLE {table} (id bigint NOT NULL, kind text, "
                                 "at timestamptz NOT NULL)"))
        conn.execute(sa.text(f"INSERT INTO {table} {ROWS_SQL}"), {"rows": rows})
        if table not in PARTITIONED:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD PRIMARY KEY (id)"))
        conn.execute(sa.text(f"CREATE INDEX {table}_at ON {table} (at)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"VACUUM ANALYZE {table}"))  # as autovacuum would have


def build(engine: sa.Engine, rows: int) -> None:
    """The three tables at once (one connection each: the machine has two cores)."""
    threads = [threading.Thread(target=build_one, args=(engine, table, rows))
               for table in (*PARTITIONED, "events_flat")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("CHECKPOINT"))


def due(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE at < {CUTOFF}"))
                   .scalar_one())


def lethe_run(url: str, table: str, directory: Path, count: str = "exact") -> dict[str, Any]:
    path = directory / f"{table}.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "bench", "control": f"sqlite:///{table}-state.db",
        "stores": {"app": {"url": url}},
        "datasets": {table: {"store": "app", "table": table, "key": "id",
                             "class": "behavioral", "partitions": {"count": count},
                             "retention": [{"keep": "12mo", "after": "at"}]}}}))
    rt = Runtime.open(load_policy(path), Clock(NOW))
    try:
        plan = build_plan(rt)
        started = time.perf_counter()
        result = execute(rt, plan)
        seconds = time.perf_counter() - started
    finally:
        rt.close()
    [action] = result.actions
    return {"seconds": seconds, "work_seconds": action.batch_ms / 1000, "rows": action.done,
            "estimated": action.estimated, "verified": action.verified,
            "path": action.planned.as_dict()["path"],
            "partitions": action.planned.partitions, "rows_per_s": action.done / seconds}


def raw_drops(engine: sa.Engine) -> dict[str, Any]:
    """The ceiling: PostgreSQL's own `DROP TABLE` of each due partition of
    `events_ceiling`, one autocommitted statement each, nothing else (no detach, no
    count, no hold check, no audit). No retention tool can drop faster."""
    names = [f"events_ceiling_{2024 + i // 12}_{1 + i % 12:02d}" for i in range(12)]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        started = time.perf_counter()
        for name in names:
            conn.execute(sa.text(f"DROP TABLE {name}"))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "partitions": len(names),
            "per_partition_ms": seconds * 1000 / len(names)}


def raw_delete(engine: sa.Engine) -> dict[str, Any]:
    with engine.begin() as conn:
        started = time.perf_counter()
        rows = conn.execute(sa.text(f"DELETE FROM events_flat WHERE at < {CUTOFF}")).rowcount
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "rows_per_s": rows / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4_800_000)
    parser.add_argument("--tablespace", help="build the tables in this existing tablespace "
                        "(e.g. one on tmpfs, to measure without the disk's file truncation)")
    parser.add_argument("--label", help="write bench/results/partitions-LABEL.json")
    args = parser.parse_args()
    url = fresh_database(DB, args.tablespace)
    engine = sa.create_engine(normalize_url(url))
    try:
        print(f"building 3 tables x {args.rows:,} rows ...", flush=True)
        started = time.perf_counter()
        build(engine, args.rows)
        print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
        due_rows = due(engine, "events_exact")
        actual = {"events_estimate": due(engine, "events_estimate")}
        with tempfile.TemporaryDirectory() as tmp:
            exact = lethe_run(url, "events_exact", Path(tmp))
            print(f"lethe, partitions, exact counts:     {exact['work_seconds']:.3f} s",
                  flush=True)
            estimate = lethe_run(url, "events_estimate", Path(tmp), "estimate")
            print(f"lethe, partitions, estimated counts: {estimate['work_seconds']:.3f} s",
                  flush=True)
            baseline = raw_delete(engine)
            print(f"raw DELETE:                          {baseline['seconds']:.3f} s",
                  flush=True)
            ceiling = raw_drops(engine)
            print(f"raw DROP TABLE of each partition:    {ceiling['seconds']:.3f} s",
                  flush=True)
            with engine.begin() as conn:  # put the rows back for lethe's row path
                conn.execute(sa.text(f"INSERT INTO events_flat SELECT * FROM ({ROWS_SQL}) s "
                                     f"WHERE at < {CUTOFF}"), {"rows": args.rows})
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE events_flat"))
            rows_path = lethe_run(url, "events_flat", Path(tmp))
            print(f"lethe, row batches:                  {rows_path['seconds']:.3f} s",
                  flush=True)
        left = tuple(due(engine, t) for t in (*PARTITIONED[:2], "events_flat"))
    finally:
        engine.dispose()
        drop_database(DB)
    raw = baseline["seconds"]
    ratios = {  # each against the raw DELETE of this run; work: drops (or batches) only
        "exact_count_drop_over_raw_delete": raw / exact["work_seconds"],
        "exact_count_run_over_raw_delete": raw / exact["seconds"],
        "estimated_count_drop_over_raw_delete": raw / estimate["work_seconds"],
        "estimated_count_run_over_raw_delete": raw / estimate["seconds"],
        "lethe_row_batches_over_raw_delete": raw / rows_path["work_seconds"],
        "lethe_row_run_over_raw_delete": raw / rows_path["seconds"],
        # the ceiling: PostgreSQL's bare DROP TABLE, and lethe's drops against it
        "raw_drop_over_raw_delete": raw / ceiling["seconds"],
        "estimated_count_drop_over_raw_drop": ceiling["seconds"] / estimate["work_seconds"]}
    per_partition_ms = estimate["work_seconds"] * 1000 / max(estimate["partitions"], 1)
    delete_us_per_row = raw * 1e6 / baseline["rows"]
    # extrapolation, not a measurement: rows a partition must hold for the estimated
    # path's fixed cost per partition to be 1/100 of deleting its rows
    rows_for_target = TARGET * per_partition_ms * 1000 / delete_us_per_row
    checks = {"same_rows": exact["rows"] == baseline["rows"] == rows_path["rows"] == due_rows,
              "estimate_close": abs(estimate["rows"] - actual["events_estimate"])
              <= 0.01 * actual["events_estimate"],
              "estimate_flagged": estimate["estimated"] is True and not exact["estimated"],
              "nothing_due_left": left == (0, 0, 0),
              "partition_path_taken": all(r["path"] == "partitions" and r["partitions"] == 12
                                          for r in (exact, estimate)),
              "verified": all(bool(r["verified"]) for r in (exact, estimate, rows_path))}
    exact_ratio = ratios["exact_count_drop_over_raw_delete"]
    estimate_ratio = ratios["estimated_count_drop_over_raw_delete"]
    print(f"\n{due_rows:,} rows due in each of three tables of {args.rows:,} "
          f"(12 partitions of ~{due_rows // 12:,} rows)")
    print(f"raw DELETE: {raw * 1000:,.0f} ms ({delete_us_per_row:.2f} us a row)")
    print(f"lethe, partitions, EXACT row counts:     {exact['work_seconds'] * 1000:,.0f} ms, "
          f"{exact_ratio:.1f}x the raw DELETE (whole run "
          f"{ratios['exact_count_run_over_raw_delete']:.1f}x)")
    print(f"lethe, partitions, ESTIMATED row counts: {estimate['work_seconds'] * 1000:,.0f} ms, "
          f"{estimate_ratio:.1f}x the raw DELETE (whole run "
          f"{ratios['estimated_count_run_over_raw_delete']:.1f}x); reported "
          f"{estimate['rows']:,} rows (an estimate) for {actual['events_estimate']:,}")
    print(f"target >= {TARGET:.0f}x: exact {'MET' if exact_ratio >= TARGET else 'MISSED'}, "
          f"estimated {'MET' if estimate_ratio >= TARGET else 'MISSED'}")
    print(f"fixed cost of a partition (estimated path): {per_partition_ms:.1f} ms; "
          f"extrapolated, not measured: 100x needs ~{rows_for_target:,.0f} rows a partition")
    print(f"ceiling: a bare DROP TABLE of each partition, {ceiling['seconds'] * 1000:,.0f} ms, "
          f"is {ratios['raw_drop_over_raw_delete']:.1f}x the raw DELETE; lethe's estimated "
          f"path takes {1 / ratios['estimated_count_drop_over_raw_drop']:.2f}x its time")
    print(f"lethe's row batches: {ratios['lethe_row_batches_over_raw_delete']:.2f}x a raw "
          f"DELETE (whole run {ratios['lethe_row_run_over_raw_delete']:.2f}x)")
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    path = write_result("partitions" + (f"-{args.label}" if args.label else ""), {
        "rows_per_table": args.rows, "due_rows": due_rows, "tablespace": args.tablespace,
        "raw_drop": ceiling,
        "lethe_partitions_exact": exact, "lethe_partitions_estimated": estimate,
        "estimated_table_due_rows": actual["events_estimate"],
        "raw_delete": baseline, "lethe_rows": rows_path, "ratios": ratios,
        "per_partition_ms_estimated_path": per_partition_ms,
        "raw_delete_us_per_row": delete_us_per_row,
        "extrapolated_rows_per_partition_for_target": rows_for_target,
        "target": {"partition_drop_speedup_over_raw_delete": TARGET},
        "target_met": {"exact": exact_ratio >= TARGET, "estimated": estimate_ratio >= TARGET},
        "checks": checks})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
