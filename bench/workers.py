"""Sweep throughput with 1, 2 and 4 `lethe worker` processes sharing one schedule.

Eight tables of `--rows` rows each (default 250,000; two thirds due) on PostgreSQL, the
control store in the same database. For each worker count the tables are rebuilt, then
N `lethe worker --once` processes start together and share the schedule's eight units
through leases; the figure is rows deleted per second of wall time, from the first
start to the last exit. The baseline is one worker (same run). The machine's cores
bound what more workers can add: PostgreSQL and the workers share them.

Run: `python bench/workers.py [--rows N]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import drop_database, fresh_database, write_result

from lethe.stores.sql import normalize_url

DB = "lethe_bench_workers"
TABLES = [f"t_{i}" for i in range(8)]
NOW_ARG = "2026-06-01T03:00:00Z"
CUTOFF = "TIMESTAMPTZ '2026-05-02 03:00:00+00'"


def build(engine: sa.Engine, rows: int) -> int:
    with engine.begin() as conn:
        if conn.execute(sa.text("SELECT to_regclass('lethe_leases')")).scalar():
            conn.execute(sa.text("DELETE FROM lethe_leases"))  # the occurrence runs afresh
        for table in TABLES:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            conn.execute(sa.text(f"CREATE TABLE {table} (id bigint NOT NULL, at timestamptz)"))
            conn.execute(sa.text(
                f"INSERT INTO {table} SELECT g, TIMESTAMPTZ '2026-06-01' - g * INTERVAL "
                "'90 days' / :rows FROM generate_series(1, :rows) g"), {"rows": rows})
            conn.execute(sa.text(f"ALTER TABLE {table} ADD PRIMARY KEY (id)"))
            conn.execute(sa.text(f"CREATE INDEX ON {table} (at)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
        return sum(int(conn.execute(sa.text(f"SELECT count(*) FROM {t} WHERE at < {CUTOFF}"))
                       .scalar_one()) for t in TABLES)


def write_policy(directory: Path, url: str) -> Path:
    datasets = "\n".join(f"  {t}: {{store: app, table: {t}, class: operational, "
                         f"retention: [{{keep: 30d, after: at}}]}}" for t in TABLES)
    path = directory / "lethe.yaml"
    path.write_text(f'lethe: 1\norganization: bench\ncontrol: "{url}"\n'
                    f'stores: {{app: {{url: "{url}"}}}}\ndatasets:\n{datasets}\n'
                    'schedules:\n  nightly: {cron: "0 2 * * *", datasets: all}\n')
    return path


def run_workers(policy: Path, count: int) -> float:
    argv = [sys.executable, "-c", "from lethe.cli.app import main; main()", "worker",
            "--policy", str(policy), "--now", NOW_ARG, "--once", "--json",
            "--poll-seconds", "0.2"]
    started = time.perf_counter()
    procs = [subprocess.Popen([*argv, "--name", f"w{i}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "NO_COLOR": "1"}) for i in range(count)]
    for proc in procs:
        _out, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"a worker failed: {err[-500:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=250_000, help="rows per table")
    args = parser.parse_args()
    url = fresh_database(DB)
    engine = sa.create_engine(normalize_url(url))
    results: dict[int, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            policy = write_policy(Path(tmp), url)
            for count in (1, 2, 4):
                due = build(engine, args.rows)
                seconds = run_workers(policy, count)
                with engine.connect() as conn:
                    left = sum(int(conn.execute(sa.text(
                        f"SELECT count(*) FROM {t} WHERE at < {CUTOFF}")).scalar_one())
                        for t in TABLES)
                results[count] = {"workers": count, "rows": due, "seconds": seconds,
                                  "rows_per_s": due / seconds, "due_left": left}
                print(f"{count} worker(s): {due:,} rows in {seconds:.2f} s "
                      f"({due / seconds:,.0f} rows/s)", flush=True)
    finally:
        engine.dispose()
        drop_database(DB)
    base = results[1]["rows_per_s"]
    ratios = {f"{n}_workers_over_1": results[n]["rows_per_s"] / base for n in (2, 4)}
    print("ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) +
          f" (on {os.cpu_count()} cores, PostgreSQL included)")
    checks = {"nothing_due_left": all(r["due_left"] == 0 for r in results.values())}
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    path = write_result("workers", {"rows_per_table": args.rows, "tables": len(TABLES),
                                    "runs": list(results.values()), "ratios": ratios,
                                    "checks": checks})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
