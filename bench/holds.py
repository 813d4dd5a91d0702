"""Holds benchmark: retention sweep speed with many subject holds vs with a few (issue 16).

A subject dataset `users` (key `id`, identities `email` and `id`) and a child `events`
(`belongs_to: {users: user_id}`, `retention: [{keep: 30d, after: ts}]`, erasure delete):
by default 20,000 users and 400,000 events, owners spread evenly, timestamps spread over
60 days so about half are due. For each hold count N (`--holds`, default 10,1500,10000)
lethe's own `place_hold` puts a subject hold on N distinct users (`user:<email>`), then
`build_plan` + `execute` run the sweep; the execute is timed. Held users' events stay,
so with 10,000 holds on 20,000 users about half the due rows are held, not deleted: the
headline ratio (rows deleted a second) then carries a factor of ~0.5 from the holds
themselves. `ratios_due_rows` counts deleted + held rows a second (the rows the sweep
decided about), and `--users 200000` makes 10,000 holds 5 % of the users.

Every figure is a ratio against the smallest hold count (10) on the same store in the
same run, trials interleaved so drift hits all alike, each trial on a freshly built
table: SQLite (a file in a temporary directory) and PostgreSQL (a throwaway database).
Each trial runs in a child process capped at `--timeout` seconds (a trial that takes
longer is recorded as "timeout"); a trial that raises is recorded with its error.
lethe's control store (holds, runs, audit chain) is SQLite in a temporary directory.
Run: `python bench/holds.py [--users N] [--events N] [--stores sqlite,postgres]
[--holds 10,1500,10000]`; `--quick` is a small smoke run (results/holds-quick.json).
Others edit src/ as this runs; to measure one commit, export it (`git archive HEAD src |
tar -x -C /tmp/lethe-X`) and run with `PYTHONPATH=/tmp/lethe-X/src` (recorded in `code`).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import subprocess
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from common import drop_database, fresh_database, write_result

import lethe
from lethe.clock import Clock
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.holds import parse_scope, place_hold
from lethe.policy.load import load_policy
from lethe.runtime import Runtime
from lethe.stores.sql import normalize_url

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SPREAD_S = 60 * 86400  # event timestamps over 60 days; `keep: 30d` makes about half due
DB = "lethe_bench_holds"
TARGET = 0.5  # issue 16: with 10,000 subject holds, >= 0.5x the speed with 10
SEED = 16

metadata = sa.MetaData()
users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(200), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200)),
)
events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, index=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("payload", sa.Text),
)


def email(user_id: int) -> str:
    return f"user{user_id}@example.com"


def event_rows(count: int, user_count: int) -> Iterator[tuple[int, int, datetime, str]]:
    """The same events on every store: a random owner and a random age (seeded)."""
    rng = random.Random(SEED)
    for g in range(1, count + 1):
        yield (g, rng.randint(1, user_count), NOW - timedelta(seconds=rng.uniform(0, SPREAD_S)),
               f"event {g} " + "x" * 40)


# -- the database ------------------------------------------------------------------------
def build_tables(url: str, user_count: int, event_count: int) -> int:
    """Drop and refill both tables; bulk load first, indexes after. Returns the due rows."""
    engine = sa.create_engine(normalize_url(url))
    try:
        metadata.drop_all(engine)
        with engine.begin() as conn:
            # the tables without their indexes: those come after the load
            conn.execute(sa.schema.CreateTable(users))
            conn.execute(sa.schema.CreateTable(events))
        people = [(i, email(i), f"User {i}") for i in range(1, user_count + 1)]
        rows = event_rows(event_count, user_count)
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            if engine.dialect.name == "postgresql":
                with cur.copy("COPY users (id, email, display_name) FROM STDIN") as copy:
                    for person in people:
                        copy.write_row(person)
                with cur.copy("COPY events (id, user_id, ts, payload) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:  # the text SQLAlchemy's SQLite DateTime writes
                cur.executemany("INSERT INTO users VALUES (?, ?, ?)", people)
                cur.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", (
                    (g, u, ts.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f"), p)
                    for g, u, ts, p in rows))
            raw.commit()
        finally:
            raw.close()
        with engine.begin() as conn:
            for index in events.indexes:
                index.create(conn)
        cutoff = NOW - timedelta(days=30)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
                conn.execute(sa.text("CHECKPOINT"))  # every trial starts with clean buffers
                return int(conn.execute(sa.text("SELECT count(*) FROM events WHERE ts < :c"),
                                        {"c": cutoff}).scalar_one())
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
            return int(conn.execute(sa.text("SELECT count(*) FROM events WHERE ts < :c"), {
                "c": cutoff.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")}).scalar_one())
    finally:
        engine.dispose()


def held_users(count: int, user_count: int) -> list[int]:
    return sorted(random.Random(SEED + count).sample(range(1, user_count + 1), count))


def held_events(url: str, user_ids: list[int]) -> int:
    """Due events of held users: what the sweep must keep."""
    cutoff = NOW - timedelta(days=30)
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            cut: Any = cutoff
            if engine.dialect.name == "sqlite":
                cut = cutoff.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(events)
                .where(events.c.ts < cut, events.c.user_id.in_(user_ids))).scalar_one())
    finally:
        engine.dispose()


# -- lethe ------------------------------------------------------------------------------
def write_policy(directory: Path, url: str) -> Path:
    path = directory / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "bench", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}},
        "subjects": {"user": {"dataset": "users", "identities": ["email", "id"]}},
        "datasets": {
            "users": {"store": "app", "table": "users", "class": "pii",
                      "fields": {"email": {"class": "pii", "anonymize": "mask-email"},
                                 "display_name": {"class": "pii", "anonymize": "redact"}}},
            "events": {"store": "app", "table": "events", "class": "behavioral",
                       "belongs_to": {"users": "user_id"}, "erasure": "delete",
                       "retention": [{"keep": "30d", "after": "ts"}]}}}, sort_keys=False))
    return path


def place_holds(policy: Path, user_ids: list[int]) -> float:
    """One subject hold per user, by email, as `lethe hold place --subject` does."""
    started = time.perf_counter()
    rt = Runtime.open(load_policy(policy), Clock(NOW))
    try:
        for user_id in user_ids:
            scope = parse_scope(rt.policy, f"user:{email(user_id)}", None, None)
            place_hold(rt.control, rt.audit, rt.clock, scope, "bench: case 16")
    finally:
        rt.close()
    return time.perf_counter() - started


def sweep_trial(policy: str, batch_size: int, out: Connection) -> None:
    """In a child process: plan and execute the retention sweep, send back the timings."""
    try:
        rt = Runtime.open(load_policy(Path(policy)), Clock(NOW))
        try:
            started = time.perf_counter()
            plan = build_plan(rt)
            planned = time.perf_counter()
            result = execute(rt, plan, batch_size=batch_size)
            finished = time.perf_counter()
        finally:
            rt.close()
        action = next(a for a in result.actions if a.planned.step.dataset == "events")
        elapsed = finished - planned
        out.send({"rows": action.done, "held": action.planned.held,
                  "seconds": elapsed, "rows_per_s": action.done / elapsed,
                  "due_rows_per_s": (action.done + action.planned.held) / elapsed,
                  "plan_seconds": planned - started, "batches": action.batches,
                  "batch_seconds": action.batch_ms / 1000,
                  "longest_transaction_s": action.longest_batch_ms / 1000,
                  "verified": bool(action.verified), "ok": result.ok,
                  "error": action.error})
    except BaseException as exc:  # the parent records it and goes on
        out.send({"error": f"{type(exc).__name__}: {exc}"[:2000],
                  "traceback": traceback.format_exc()[-4000:]})


def run_trial(policy: Path, batch_size: int, timeout: float) -> dict[str, Any]:
    """One sweep in a child process, killed (by its pid) after `timeout` seconds."""
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=sweep_trial, args=(str(policy), batch_size, send))
    started = time.perf_counter()
    child.start()
    send.close()
    try:
        if receive.poll(timeout):
            try:
                return dict(receive.recv())
            except EOFError:
                pass
        else:
            return {"error": "timeout", "timeout_s": timeout}
        child.join(10)
        return {"error": f"child exited with code {child.exitcode} after "
                         f"{time.perf_counter() - started:.1f} s"}
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()


@contextmanager
def app_database(store: str, tmp: Path) -> Iterator[Any]:
    """A function giving a fresh, empty database URL per call, cleaned up at the end."""
    def fresh() -> str:
        if store == "postgres":  # a fresh one also ends any backend a killed child left
            return fresh_database(DB)
        path = tmp / "app.db"
        for leftover in tmp.glob("app.db*"):
            leftover.unlink()
        return f"sqlite:///{path}"
    try:
        yield fresh
    finally:
        if store == "postgres":
            drop_database(DB)


def code_version() -> dict[str, Any]:
    """The commit measured, and source files that differed from it (others edit as we run)."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=False).stdout.strip()
    imported = Path(lethe.__file__).resolve().parent
    if imported != Path(__file__).resolve().parent.parent / "src" / "lethe":
        return {"lethe": str(imported), "note": "imported from outside this checkout"}
    return {"commit": git("rev-parse", "HEAD"), "lethe": str(imported),
            "src_changed": git("status", "--porcelain", "--", "src").splitlines()}


def median_trial(trials: list[dict[str, Any]]) -> dict[str, Any]:
    good = [t for t in trials if "rows_per_s" in t and not t.get("error")]
    if not good:
        return {"error": trials[-1].get("error", "no trial"), "trials": trials}
    ranked = sorted(good, key=lambda t: t["rows_per_s"])
    return {**ranked[len(ranked) // 2], "trials_rows_per_s": [t["rows_per_s"] for t in good],
            "failed_trials": [t["error"] for t in trials if t not in good]}


def measure_store(store: str, args: argparse.Namespace,
                  counts: list[int]) -> tuple[dict[str, Any], int]:
    """Every hold count on one store; returns per count the median trial, and due rows."""
    trials: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    setup: dict[int, dict[str, Any]] = {}
    due = 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with app_database(store, tmp / "app") as fresh:
            (tmp / "app").mkdir()
            url = fresh()
            build_tables(url, args.users, args.events)
            policies: dict[int, Path] = {}
            for n in counts:  # one control store per hold count, the holds placed once
                directory = tmp / f"holds-{n}"
                directory.mkdir()
                policies[n] = write_policy(directory, url)
                chosen = held_users(n, args.users)
                setup[n] = {"place_holds_seconds": place_holds(policies[n], chosen),
                            "held_due_rows": held_events(url, chosen)}
                print(f"  {store}: placed {n:,} holds in "
                      f"{setup[n]['place_holds_seconds']:.1f} s", flush=True)
            for trial in range(args.trials):  # interleaved, so drift hits all alike
                for n in counts:
                    if trials[n] and trials[n][-1].get("error"):
                        continue  # it failed or timed out: the next trial would too
                    fresh()  # the same URL, an empty database: a rebuilt table per trial
                    due = build_tables(url, args.users, args.events)
                    got = run_trial(policies[n], args.batch_size, args.timeout)
                    trials[n].append(got)
                    shown = f"{got['rows_per_s']:>10,.0f} rows/s ({got['seconds']:.2f} s, " \
                        f"plan {got['plan_seconds']:.2f} s)" if "rows_per_s" in got \
                        else f"error: {got['error'][:200]}"
                    print(f"  {store} trial {trial + 1}, {n:>6,} holds: {shown}", flush=True)
    return {str(n): {**setup[n], **median_trial(trials[n])} for n in counts}, due


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=None, help="default 20,000")
    parser.add_argument("--events", type=int, default=None, help="default 400,000")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--holds", default=None, help="default 10,1500,10000")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=None, help="default 3")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds before a trial is stopped (default 120)")
    parser.add_argument("--name", default=None,
                        help="result file bench/results/NAME.json (default holds, "
                             "holds-quick with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2,000 users, 40,000 events, holds 10,150,1000, "
                             "one trial, 60 s cap")
    args = parser.parse_args()
    quick = {"users": 2_000, "events": 40_000, "holds": "10,150,1000", "trials": 1,
             "timeout": 60.0}
    full = {"users": 20_000, "events": 400_000, "holds": "10,1500,10000", "trials": 3,
            "timeout": 120.0}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    counts = sorted({int(n) for n in args.holds.split(",")})
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if counts[-1] > args.users or counts[0] < 1:
        parser.error("every hold count must be between 1 and --users (one hold per user)")
    if not set(stores) <= {"sqlite", "postgres"}:
        parser.error("--stores takes sqlite and/or postgres")
    base = counts[0]
    results: dict[str, Any] = {}
    ratios: dict[str, dict[str, float | str]] = {}
    due_ratios: dict[str, dict[str, float | str]] = {}  # (deleted + held) rows a second
    due = 0
    for store in stores:
        print(f"{store}: {args.users:,} users, {args.events:,} events, holds {counts}",
              flush=True)
        results[store], due = measure_store(store, args, counts)
        baseline = results[store][str(base)]
        ratios[store], due_ratios[store] = {}, {}
        for n in counts[1:]:
            got = results[store][str(n)]
            if "rows_per_s" in got and "rows_per_s" in baseline:
                ratios[store][str(n)] = got["rows_per_s"] / baseline["rows_per_s"]
                due_ratios[store][str(n)] = got["due_rows_per_s"] / baseline["due_rows_per_s"]
            else:
                ratios[store][str(n)] = due_ratios[store][str(n)] = \
                    got.get("error") or baseline.get("error") or "error"
    print(f"\nevents: {args.events:,} ({due:,} due), users: {args.users:,}; median of "
          f"{args.trials} trial(s), ratios against {base} holds, same store, same run")
    for store in stores:
        baseline = results[store][str(base)]
        for n in counts:
            got = results[store][str(n)]
            if "rows_per_s" not in got:
                print(f"{store:>8} {n:>6,} holds: {str(got.get('error'))[:120]}")
                continue
            ratio = ratios[store].get(str(n))
            shown = "baseline" if n == base else \
                f"{ratio:.2f}x" if isinstance(ratio, float) else "-"
            due_ratio = due_ratios[store].get(str(n))
            due_shown = f", due rows {due_ratio:.2f}x" if isinstance(due_ratio, float) else ""
            print(f"{store:>8} {n:>6,} holds: {got['rows_per_s']:>10,.0f} rows/s  {shown:>8}"
                  f"  ({got['rows']:,} deleted, {got['held']:,} held, execute "
                  f"{got['seconds']:.2f} s, plan {got['plan_seconds']:.2f} s{due_shown})")
    path = write_result(args.name or ("holds-quick" if args.quick else "holds"), {
        "users": args.users, "events": args.events, "due_rows": due, "holds": counts,
        "baseline_holds": base, "trials": args.trials, "timeout_s": args.timeout,
        "batch_size": args.batch_size, "code": code_version(), "stores": results,
        "ratios": ratios, "ratios_due_rows": due_ratios,
        "targets": {f"rows_per_s_{counts[-1]}_vs_{base}_holds": TARGET}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
