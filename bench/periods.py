"""Periods customers set (issue 22, item 5): a sweep where every workspace has its own
retention period, against the same sweep with one fixed period.

PostgreSQL: `messages` (`--rows`, default 1,000,000) spread over `--workspaces`
(default 10,000) workspaces, created at random over the last two years; `workspaces`
with `message_retention_days` drawn at random from 1 to 730 days (about half the rows
due either way). Two policies over identical copies of the table, interleaved
`--trials` times in one run:

- fixed: `keep: 365d, after: created_at` (the baseline);
- from data: `keep: {from: workspaces.message_retention_days, default: 90d, min: 1d,
  max: 730d}`: each row's period read from its workspace in the same SQL statement.

lethe's whole run (`execute` from a made plan, key loaded: a worker's steady state) is
timed; the figure is rows deleted per second, from data over fixed. Target: >= 0.8.
Run: `python bench/periods.py [--rows N] [--workspaces N]`. Writes
bench/results/periods.json.
"""

from __future__ import annotations

import argparse
import statistics
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from common import drop_database, fresh_database, timed_run, write_result

from lethe.stores.sql import normalize_url

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DB = "lethe_bench_periods"
TARGET = 0.8  # issue 22: from data at >= 0.8x the fixed period's rows/s
KEEPS: dict[str, Any] = {
    "fixed": "365d",
    "from data": {"from": "workspaces.message_retention_days", "default": "90d",
                  "min": "1d", "max": "730d"}}


def build(engine: sa.Engine, rows: int, workspaces: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS messages"))
        conn.execute(sa.text("DROP TABLE IF EXISTS workspaces"))
        conn.execute(sa.text("CREATE TABLE workspaces (id bigint PRIMARY KEY,"
                             " message_retention_days integer)"))
        conn.execute(sa.text(
            "INSERT INTO workspaces SELECT g, 1 + (hashtext('p' || g)::bigint & 2147483647)"
            " % 730 FROM generate_series(1, :n) g"), {"n": workspaces})
        conn.execute(sa.text("CREATE TABLE messages (id bigint PRIMARY KEY,"
                             " workspace_id bigint, created_at timestamptz, body text)"))
        conn.execute(sa.text(
            "INSERT INTO messages SELECT g, 1 + (hashtext('w' || g)::bigint & 2147483647) % :n,"
            " :now - make_interval(secs => ((hashtext('t' || g)::bigint & 2147483647)"
            " % (730 * 86400))::float8), md5(g::text) FROM generate_series(1, :rows) g"),
            {"n": workspaces, "rows": rows, "now": NOW})
        conn.execute(sa.text("CREATE INDEX messages_created_at ON messages (created_at)"))
        conn.execute(sa.text("CREATE INDEX messages_workspace ON messages (workspace_id)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
        conn.execute(sa.text("CHECKPOINT"))


def measure(url: str, keep: Any, batch_size: int) -> dict[str, Any]:
    plan, result, elapsed = timed_run(url, {
        "workspaces": {"store": "app", "table": "workspaces", "class": "operational"},
        "messages": {"store": "app", "table": "messages", "class": "pii",
                     "belongs_to": {"workspaces": "workspace_id"},
                     "retention": [{"keep": keep, "after": "created_at"}]}}, NOW, batch_size)
    planned = sum(a.rows for a in plan.actions if a.step.dataset == "messages")
    action = next(a for a in result.actions if a.planned.step.dataset == "messages")
    if not result.ok or action.done != planned:
        raise SystemExit(f"the run did not do what it planned: {result.as_dict()}")
    return {"rows": action.done, "seconds": elapsed, "rows_per_s": action.done / elapsed,
            "batch_seconds": action.batch_ms / 1000, "verify_seconds": action.verify_ms / 1000,
            "batches": action.batches,
            "longest_transaction_s": action.longest_batch_ms / 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workspaces", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    url = fresh_database(DB)
    engine = sa.create_engine(normalize_url(url))
    trials: dict[str, list[dict[str, Any]]] = {name: [] for name in KEEPS}
    try:
        for trial in range(args.trials):  # interleaved, so drift hits both alike
            for name, keep in KEEPS.items():
                build(engine, args.rows, args.workspaces)
                trials[name].append(measure(url, keep, args.batch_size))
            print(f"trial {trial + 1}: " + ", ".join(
                f"{name} {runs[-1]['rows_per_s']:,.0f} rows/s ({runs[-1]['rows']:,} rows)"
                for name, runs in trials.items()), flush=True)
    finally:
        engine.dispose()
        drop_database(DB)
    median = {name: sorted(runs, key=lambda r: r["rows_per_s"])[len(runs) // 2]
              for name, runs in trials.items()}
    ratio = median["from data"]["rows_per_s"] / median["fixed"]["rows_per_s"]
    for name, run in median.items():
        print(f"{name:>10}: {run['rows_per_s']:>10,.0f} rows/s ({run['rows']:,} rows in "
              f"{run['seconds']:.2f} s: batches {run['batch_seconds']:.2f} s, verification "
              f"{run['verify_seconds']:.2f} s; longest transaction "
              f"{run['longest_transaction_s']:.3f} s)")
    spread = {name: [round(r["rows_per_s"]) for r in runs] for name, runs in trials.items()}
    print(f"from data / fixed = {ratio:.2f}x (target >= {TARGET}x: "
          f"{'met' if ratio >= TARGET else 'MISSED'}); trials {spread}; median of "
          f"{args.trials}, stdev from data "
          f"{statistics.pstdev(spread['from data']):,.0f} rows/s")
    path = write_result("periods", {
        "rows": args.rows, "workspaces": args.workspaces, "batch_size": args.batch_size,
        "trials": args.trials, "fixed": median["fixed"], "from_data": median["from data"],
        "trials_rows_per_s": spread, "ratio_from_data_over_fixed": ratio,
        "target": TARGET, "target_met": ratio >= TARGET})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
