"""Partition drop vs DELETE: retention on a range-partitioned PostgreSQL table.

Two tables hold the same rows (`--rows`, default 2,400,000, spread evenly over 24 months
of `at`): `events_part`, range-partitioned by month, and `events_flat`, a plain table
with an index on `at`. The policy keeps 12 months, so half the rows are due, exactly in
the twelve oldest partitions. Measured in this one run:

1. lethe `run` on the partitioned table (it drops the twelve partitions);
2. one raw `DELETE … WHERE at < cutoff` on the plain table (the fastest way to delete
   rows, no batching);
3. lethe `run` on the plain table (row batches), for reference.

Run: `python bench/partitions.py [--rows N]`.
"""

from __future__ import annotations

import argparse
import tempfile
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
from lethe.engine.runtime import Runtime
from lethe.policy.load import load_policy
from lethe.stores.sql import normalize_url

DB = "lethe_bench_partitions"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
CUTOFF = "TIMESTAMPTZ '2025-01-01'"
TARGET = 100.0  # partition drop at least 100x a raw DELETE


def build(engine: sa.Engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE events_part (id bigint NOT NULL, kind text, "
                             "at timestamptz NOT NULL) PARTITION BY RANGE (at)"))
        for index in range(24):
            year, month = 2024 + index // 12, 1 + index % 12
            upper = f"{year + (month == 12)}-{1 if month == 12 else month + 1:02d}-01"
            conn.execute(sa.text(
                f"CREATE TABLE events_part_{year}_{month:02d} PARTITION OF events_part "
                f"FOR VALUES FROM ('{year}-{month:02d}-01') TO ('{upper}')"))
        conn.execute(sa.text("CREATE TABLE events_flat (id bigint NOT NULL, kind text, "
                             "at timestamptz NOT NULL)"))
        for table in ("events_part", "events_flat"):
            conn.execute(sa.text(
                f"INSERT INTO {table} SELECT g, 'page_view', TIMESTAMPTZ '2024-01-01' + "
                "((g - 1)::float / :rows) * INTERVAL '731 days' FROM generate_series(1, :rows) g"),
                {"rows": rows})
        conn.execute(sa.text("ALTER TABLE events_flat ADD PRIMARY KEY (id)"))
        conn.execute(sa.text("CREATE INDEX events_flat_at ON events_flat (at)"))
        conn.execute(sa.text("CREATE INDEX events_part_at ON events_part (at)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
        conn.execute(sa.text("CHECKPOINT"))


def due(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE at < {CUTOFF}"))
                   .scalar_one())


def lethe_run(url: str, table: str, directory: Path) -> dict[str, Any]:
    path = directory / f"{table}.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "bench", "control": f"sqlite:///{table}-state.db",
        "stores": {"app": {"url": url}},
        "datasets": {table: {"store": "app", "table": table, "key": "id",
                             "class": "behavioral",
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
            "verified": action.verified, "path": action.planned.as_dict()["path"],
            "partitions": action.planned.partitions, "rows_per_s": action.done / seconds}


def raw_delete(engine: sa.Engine) -> dict[str, Any]:
    with engine.begin() as conn:
        started = time.perf_counter()
        rows = conn.execute(sa.text(f"DELETE FROM events_flat WHERE at < {CUTOFF}")).rowcount
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "rows_per_s": rows / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_400_000)
    args = parser.parse_args()
    url = fresh_database(DB)
    engine = sa.create_engine(normalize_url(url))
    try:
        print(f"building 2 tables x {args.rows:,} rows ...", flush=True)
        build(engine, args.rows)
        due_rows = due(engine, "events_part")
        with tempfile.TemporaryDirectory() as tmp:
            partitioned = lethe_run(url, "events_part", Path(tmp))
            print(f"lethe, partitions: {partitioned['seconds']:.3f} s", flush=True)
            baseline = raw_delete(engine)
            print(f"raw DELETE:        {baseline['seconds']:.3f} s", flush=True)
            with engine.begin() as conn:  # put the rows back for lethe's row path
                conn.execute(sa.text(
                    "INSERT INTO events_flat SELECT * FROM (SELECT g AS id, 'page_view', "
                    "TIMESTAMPTZ '2024-01-01' + ((g - 1)::float / :rows) * INTERVAL '731 days'"
                    " AS at"
                    " FROM generate_series(1, :rows) g) s WHERE at < TIMESTAMPTZ '2025-01-01'"),
                    {"rows": args.rows})
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE events_flat"))
            rows_path = lethe_run(url, "events_flat", Path(tmp))
            print(f"lethe, row batches: {rows_path['seconds']:.3f} s", flush=True)
        left = (due(engine, "events_part"), due(engine, "events_flat"))
    finally:
        engine.dispose()
        drop_database(DB)
    # the work itself (drops, or batches), and the whole run with planning and verification
    speedup = baseline["seconds"] / partitioned["work_seconds"]
    whole_run = baseline["seconds"] / partitioned["seconds"]
    checks = {"same_rows": partitioned["rows"] == baseline["rows"] == rows_path["rows"]
              == due_rows, "nothing_due_left": left == (0, 0),
              "partition_path_taken": partitioned["path"] == "partitions"
              and partitioned["partitions"] == 12,
              "verified": bool(partitioned["verified"] and rows_path["verified"])}
    ratios = {"partition_drop_speedup_over_raw_delete": speedup,
              "partition_run_speedup_over_raw_delete": whole_run,
              "lethe_row_batches_over_raw_delete": baseline["seconds"] / rows_path["work_seconds"],
              "lethe_row_run_over_raw_delete": baseline["seconds"] / rows_path["seconds"]}
    print(f"\n{due_rows:,} rows due of {2 * args.rows:,} in two tables")
    print(f"partition drop: {partitioned['work_seconds'] * 1000:.1f} ms, {speedup:,.0f}x a raw "
          f"DELETE (target >= {TARGET:.0f}x: {'MET' if speedup >= TARGET else 'MISSED'}); "
          f"the whole run with planning and verification {whole_run:.1f}x")
    print(f"lethe's row batches: {ratios['lethe_row_batches_over_raw_delete']:.2f}x a raw "
          f"DELETE (whole run {ratios['lethe_row_run_over_raw_delete']:.2f}x)")
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    path = write_result("partitions", {
        "rows_per_table": args.rows, "due_rows": due_rows, "lethe_partitions": partitioned,
        "raw_delete": baseline, "lethe_rows": rows_path, "ratios": ratios,
        "target": {"partition_drop_speedup_over_raw_delete": TARGET},
        "target_met": speedup >= TARGET, "checks": checks})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
