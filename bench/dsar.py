"""DSAR benchmark: one-subject erasure latency and bulk throughput, lethe vs a naive ORM cascade.

A 10-table graph on PostgreSQL: `users` plus nine child tables, each with `--rows` rows
(default 1,000,000) and an indexed `user_id` (about one child row per user per table,
assigned at random). Measured in this one run, on the same database:

1. lethe, one subject at a time: `open_request` + `run_request` end to end (discovery,
   batched erasure children first, counts, audit entries, signed certificate), for
   `--subjects` random users; p50 / p95 / max.
2. lethe, bulk: open `--bulk` erasure requests in one go (as `request open --from-file`
   does), then run them all (as `request run --all` does: groups of `--group-size`
   subjects, one sweep per dataset per group, a certificate per subject; each group made
   ready — subjects found, rows counted — on one thread while the group before is
   erased, and certified on another while the next is erased, so those phases' time is
   reported beside the erasure's, not added to it).
3. The baseline an application would write: SQLAlchemy ORM models, `User` with a
   `cascade="all, delete-orphan"` relationship to every child table but `payments`;
   per subject `session.get(User, id)`, `session.delete(user)`, `commit`, for
   `--subjects` other random users.
4. The floor: the same erasure hand-written for this schema, one transaction per subject
   (eight DELETEs by `user_id`, the address scrubbed and detached, payments kept, the user
   deleted), for `--subjects` other random users: what no general tool can beat.

1, 3 and 4 are timed interleaved, subject by subject (one of each, then the next of
each), so whatever the machine does meanwhile falls on all three alike.

Tables carry no FOREIGN KEY constraints (links are declared with `belongs_to`), so the
retained `payments` rows do not pin their user. lethe's control store (requests, audit
chain) is SQLite in a temporary directory, as a single-node deployment would run it.
Run: `python bench/dsar.py [--rows N]`.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import pstats
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from common import drop_database, fresh_database, write_result
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from lethe.clock import Clock
from lethe.policy.load import load_policy
from lethe.requests.service import (
    RequestOutcome,
    open_many,
    open_request,
    run_many,
    run_request,
)
from lethe.runtime import Runtime
from lethe.stores.sql import normalize_url

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DB = "lethe_bench_dsar"
# issue 20: one subject's erasure within 6x the hand-written floor, all evidence included
TARGETS = {"lethe_p50_over_floor_p50": 6.0, "lethe_bulk_subjects_per_s": 2000.0}

# Where an erasure's time goes: lethe's functions for each phase, timed around every call
# (module, attribute, phase). Calls through these names only; what is left of a request's
# time is "other" (resolving the request, soft-delete checks, Python between phases).
PHASES = [
    ("lethe.requests.service", "open_request", "open the request"),
    ("lethe.requests.service", "open_many", "open the request"),
    ("lethe.requests.service", "_subject_keys", "find the subject"),
    ("lethe.requests.service", "resolve_subjects", "find the subject"),
    # (the move into in progress commits with the baselines)
    ("lethe.requests.erasure.Group", "_baselines",
     "count rows before (baselines; with the move into in progress)"),
    ("lethe.engine.executor.Executor", "erase", "erase rows (sweeps)"),
    # one transaction: this run's entries, the evidence, the checkpoint, the signed
    # certificates kept (and their files), the requests completed, baselines cleared
    ("lethe.requests.erasure", "certify_and_complete",
     "certify and complete (entries, checkpoint, certificate, completion)"),
]

# child table -> (extra columns, their values for row g)
CHILDREN: dict[str, tuple[str, str]] = {
    "sessions": ("token_hash text, last_seen_at timestamptz",
                 "md5(g::text), :now - make_interval(mins => g % 100000)"),
    "devices": ("platform text, push_token text",
                "(ARRAY['ios', 'android', 'web'])[1 + g % 3], md5(g::text || 'device')"),
    "orders": ("total_cents bigint, placed_at timestamptz",
               "g % 100000, :now - make_interval(hours => g % 20000)"),
    "payments": ("amount_cents bigint, paid_at timestamptz",
                 "g % 100000, :now - make_interval(hours => g % 20000)"),
    "messages": ("body text, sent_at timestamptz",
                 "'message ' || md5(g::text), :now - make_interval(mins => g % 500000)"),
    "notifications": ("kind text, read_at timestamptz",
                      "(ARRAY['mention', 'digest', 'alert'])[1 + g % 3],"
                      " :now - make_interval(mins => g % 300000)"),
    "addresses": ("street text, city text, postcode text",
                  "g || ' Main Street', 'Springfield', lpad((g % 100000)::text, 5, '0')"),
    "events": ("name text, occurred_at timestamptz",
               "'page_view', :now - make_interval(secs => g % 9000000)"),
    "tokens": ("token_hash text, expires_at timestamptz",
               "md5(g::text || 'token'), :now + make_interval(days => g % 90)"),
}
DELETED = [t for t in CHILDREN if t not in ("payments", "addresses")]


# -- the database ------------------------------------------------------------------------
def build_graph(engine: sa.Engine, rows: int) -> None:
    """`users` and nine children of `rows` rows each; bulk insert first, indexes after."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE users (id bigint NOT NULL, email text NOT NULL, display_name text,"
            " created_at timestamptz NOT NULL)"))
        conn.execute(sa.text(
            "INSERT INTO users SELECT g, 'user' || g || '@example.com', 'User ' || g,"
            " :now - make_interval(days => g % 1000) FROM generate_series(1, :rows) g"),
            {"now": NOW, "rows": rows})
        conn.execute(sa.text("ALTER TABLE users ADD PRIMARY KEY (id)"))
        conn.execute(sa.text("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)"))
    for table, (columns, values) in CHILDREN.items():
        with engine.begin() as conn:
            conn.execute(sa.text(
                f"CREATE TABLE {table} (id bigint NOT NULL, user_id bigint, {columns})"))
            # a pseudo-random owner per row, different per table: ~1 row per user on average
            conn.execute(sa.text(
                f"INSERT INTO {table} SELECT g, 1 + (hashtext('{table}#' || g::text)::bigint"
                f" & 2147483647) % :rows, {values} FROM generate_series(1, :rows) g"),
                {"now": NOW, "rows": rows})
            conn.execute(sa.text(f"ALTER TABLE {table} ADD PRIMARY KEY (id)"))
            conn.execute(sa.text(f"CREATE INDEX {table}_user_id ON {table} (user_id)"))
        print(f"  built {table}", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
        conn.execute(sa.text("CHECKPOINT"))


def linked_rows(engine: sa.Engine, table: str, user_ids: list[int]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE user_id = ANY(:ids)"),
                                {"ids": user_ids}).scalar_one())


def footprint(engine: sa.Engine, user_ids: list[int]) -> dict[str, int]:
    """Rows linked to these users, per table (users: the users themselves)."""
    with engine.connect() as conn:
        users = int(conn.execute(sa.text("SELECT count(*) FROM users WHERE id = ANY(:ids)"),
                                 {"ids": user_ids}).scalar_one())
    return {"users": users, **{t: linked_rows(engine, t, user_ids) for t in CHILDREN}}


def address_ids(engine: sa.Engine, user_ids: list[int]) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT id FROM addresses WHERE user_id = ANY(:ids)"),
                                 {"ids": user_ids}).scalars())


def anonymized_addresses(engine: sa.Engine, ids: list[int]) -> int:
    """Of these addresses, how many are detached from their user and scrubbed."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM addresses WHERE id = ANY(:ids) AND user_id IS NULL"
            " AND street = '[redacted]' AND postcode IS NULL"), {"ids": ids}).scalar_one())


# -- lethe ------------------------------------------------------------------------------
def write_policy(directory: Path, url: str) -> Path:
    link = {"users": "user_id"}
    datasets: dict[str, Any] = {
        "users": {"store": "app", "table": "users", "class": "pii",
                  "fields": {"email": {"class": "pii", "anonymize": "mask-email"},
                             "display_name": {"class": "pii", "anonymize": "redact"}}},
    }
    for table in CHILDREN:
        datasets[table] = {"store": "app", "table": table, "class": "operational",
                           "belongs_to": link}
    datasets["payments"].update(erasure="retain", legal_basis="tax law: 10 years")
    datasets["addresses"].update(
        {"class": "pii", "erasure": "anonymize",
         "fields": {"street": {"class": "pii", "anonymize": "redact"},
                    "postcode": {"class": "pii", "anonymize": None}}})
    datasets["events"]["class"] = "behavioral"
    path = directory / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "bench", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}},
        "subjects": {"user": {"dataset": "users", "identities": ["email", "id"]}},
        "datasets": datasets}, sort_keys=False))
    return path


@contextmanager
def lethe_runtime(url: str) -> Iterator[tuple[Runtime, Path]]:
    """One runtime for the whole run, as a long-lived worker would hold it."""
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime.open(load_policy(write_policy(Path(tmp), url)), Clock(NOW))
        try:
            yield rt, Path(tmp) / "out"
        finally:
            rt.close()


@contextmanager
def phase_clock() -> Iterator[dict[str, float]]:
    """Seconds spent in each phase (PHASES) while the block runs."""
    spent: dict[str, float] = {}
    patched: list[tuple[Any, str, Any]] = []
    for where, name, phase in PHASES:
        owner = _owner_of(where)
        original = getattr(owner, name)

        def timed(*args: Any, _f: Any = original, _p: str = phase, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[_p] = spent.get(_p, 0.0) + time.perf_counter() - started

        setattr(owner, name, timed)
        patched.append((owner, name, original))
    try:
        yield spent
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def _owner_of(where: str) -> Any:
    """The module, or the class in a module, that `where` names."""
    parts = where.split(".")
    if parts[-1][0].isupper():
        return getattr(importlib.import_module(".".join(parts[:-1])), parts[-1])
    return importlib.import_module(where)


CERTIFY = PHASES[-1][2]
# A bulk run makes each group ready (its subjects found, counted, moved into in progress)
# on one thread and certifies it on another, both while it erases a group
# (lethe.requests.ahead.Ahead, lethe.requests.subjects.Certifications): those phases'
# time overlaps the erasure's, and is named so.
BESIDE = {
    "find the subject": " [on the ready thread, while the group before is erased]",
    PHASES[4][2]: " [on the ready thread, while the group before is erased]",
    CERTIFY: " [on its own thread, overlapping the next group's erasure]",
}


def per_subject_ms(spent: dict[str, float], total_s: float, subjects: int, *,
                   overlapped: bool = False) -> dict[str, float]:
    """Milliseconds per subject in each phase, and the rest as "other". `overlapped`: the
    phases in BESIDE ran beside the others (a bulk run), so they are named so and left
    out of what "other" is the rest of."""
    beside = BESIDE if overlapped else {}
    phases = {phase + beside.get(phase, ""): round(seconds * 1000 / subjects, 3)
              for phase, seconds in spent.items()}
    alongside = sum(seconds for phase, seconds in spent.items() if phase in beside)
    phases["other"] = round((total_s - sum(spent.values()) + alongside) * 1000 / subjects, 3)
    return phases


def erase(rt: Runtime, out: Path, user_id: int, batch_size: int) -> RequestOutcome:
    record = open_request(rt, "erasure", "user", [f"id={user_id}"])
    outcome = run_request(rt, record.id, out, batch_size)
    if outcome.record.status != "completed" or outcome.certificate is None:
        raise SystemExit(f"request {record.id} for user {user_id} did not complete: "
                         f"{outcome.as_dict()}")
    return outcome


def summarize(timings: list[float]) -> dict[str, Any]:
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return {"subjects": len(timings), "p50_ms": cuts[49], "p95_ms": cuts[94],
            "max_ms": max(timings), "mean_ms": statistics.fmean(timings),
            "subjects_per_s": len(timings) / (sum(timings) / 1000)}


def measure_single(rt: Runtime, out: Path, engine: sa.Engine, ids: dict[str, list[int]],
                   warmup: dict[str, list[int]], batch_size: int
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """lethe, the ORM cascade and the floor, one subject at a time, interleaved: their
    summaries (lethe's with the rows it erased and retained)."""
    tallies: dict[str, int] = {"erased": 0, "retained": 0}

    def lethe_one(user_id: int) -> None:
        outcome = erase(rt, out, user_id, batch_size)
        for report in outcome.datasets.values():
            tallies["erased"] += report.erased
            tallies["retained"] += report.retained

    with Session(engine) as session:
        erasures = {"lethe": (lethe_one, ids["lethe"]),
                    "orm": (orm_erasure(session), ids["orm"]),
                    "floor": (floor_erasure(engine), ids["floor"])}
        interleaved({name: (fn, warmup[name]) for name, (fn, _) in erasures.items()})
        tallies.update(erased=0, retained=0)
        timings = interleaved(erasures)
    lethe = {**summarize(timings["lethe"]), "rows_erased": tallies["erased"],
             "rows_retained": tallies["retained"], "batch_size": batch_size}
    return lethe, summarize(timings["orm"]), summarize(timings["floor"])


def single_phases(rt: Runtime, out: Path, user_ids: list[int],
                  batch_size: int) -> dict[str, float]:
    """Per single-subject erasure, milliseconds in each phase (a separate pass)."""
    with phase_clock() as spent:
        started = time.perf_counter()
        for user_id in user_ids:
            erase(rt, out, user_id, batch_size)
        total = time.perf_counter() - started
    return per_subject_ms(spent, total, len(user_ids))


def measure_lethe_bulk(rt: Runtime, out: Path, user_ids: list[int], batch_size: int,
                       group_size: int) -> dict[str, Any]:
    """What `request open --from-file` then `request run --all` do: open every request in
    one go, then erase them in groups."""
    with phase_clock() as spent:
        started = time.perf_counter()
        records = open_many(rt, "erasure", "user", [[f"id={u}"] for u in user_ids])
        opened = time.perf_counter()
        outcomes = run_many(rt, [r.id for r in records], out, batch_size, group_size)
        finished = time.perf_counter()
    completed = sum(o.record.status == "completed" and o.certified
                    for o in outcomes)
    total = finished - started
    return {"subjects": len(user_ids), "completed": completed, "seconds": total,
            "open_seconds": opened - started, "run_seconds": finished - opened,
            "subjects_per_s": len(user_ids) / total,
            "run_subjects_per_s": len(user_ids) / (finished - opened), "batch_size": batch_size,
            "group_size": group_size,
            "rows_erased": sum(r.erased for o in outcomes for r in o.datasets.values()),
            "phases_ms_per_subject": per_subject_ms(spent, total, len(user_ids),
                                                    overlapped=True)}


def profile_lethe(rt: Runtime, out: Path, user_ids: list[int], batch_size: int,
                  top: int = 20) -> dict[str, list[dict[str, Any]]]:
    """Per request, over `user_ids` erasures: lethe's functions by cumulative time, and
    every function (drivers included) by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for user_id in user_ids:
        erase(rt, out, user_id, batch_size)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.items():
        inside = "/lethe/" in filename
        where = filename.split("/lethe/", 1)[1] if inside else \
            "/".join(filename.split("/")[-2:])
        rows.append({"function": f"{where}:{line}({name})" if line else name,
                     "lethe": inside, "calls_per_request": calls / len(user_ids),
                     "cumulative_ms": cumulative * 1000 / len(user_ids),
                     "own_ms": own * 1000 / len(user_ids)})
    by_cumulative = sorted((r for r in rows if r["lethe"]), key=lambda r: -r["cumulative_ms"])
    by_own = sorted(rows, key=lambda r: -r["own_ms"])
    return {"lethe_by_cumulative": by_cumulative[:top], "all_by_own": by_own[:top // 2]}


def lethe_revision() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes at the time."""
    root = Path(__file__).resolve().parent.parent
    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True,
                              check=False)
        return done.stdout.strip()
    return {"commit": git("rev-parse", "HEAD") or None,
            "src_dirty": bool(git("status", "--porcelain", "--", "src"))}


# -- the naive ORM baseline --------------------------------------------------------------
class Base(DeclarativeBase):
    pass


def _owner() -> Mapped[int | None]:
    return mapped_column(sa.BigInteger, sa.ForeignKey("users.id"))


class UserSession(Base):
    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    token_hash: Mapped[str | None]
    last_seen_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    platform: Mapped[str | None]
    push_token: Mapped[str | None]


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    total_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    placed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    body: Mapped[str | None]
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Notification(Base):
    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    kind: Mapped[str | None]
    read_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Address(Base):
    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    street: Mapped[str | None]
    city: Mapped[str | None]
    postcode: Mapped[str | None]


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    name: Mapped[str | None]
    occurred_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    token_hash: Mapped[str | None]
    expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class User(Base):
    """Every child but payments (retained for tax law) goes with its user."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    email: Mapped[str]
    display_name: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    sessions: Mapped[list[UserSession]] = relationship(cascade="all, delete-orphan")
    devices: Mapped[list[Device]] = relationship(cascade="all, delete-orphan")
    orders: Mapped[list[Order]] = relationship(cascade="all, delete-orphan")
    messages: Mapped[list[Message]] = relationship(cascade="all, delete-orphan")
    notifications: Mapped[list[Notification]] = relationship(cascade="all, delete-orphan")
    addresses: Mapped[list[Address]] = relationship(cascade="all, delete-orphan")
    events: Mapped[list[Event]] = relationship(cascade="all, delete-orphan")
    tokens: Mapped[list[Token]] = relationship(cascade="all, delete-orphan")


def floor_erasure(engine: sa.Engine) -> Callable[[int], None]:
    """The floor: the same erasure written by hand for this one schema, one transaction
    per subject — the children deleted, the address scrubbed and detached, the payments
    kept, the user deleted — with no discovery, audit entry, count or certificate."""
    statements = [sa.text(f"DELETE FROM {table} WHERE user_id = :id") for table in DELETED]
    statements.append(sa.text("UPDATE addresses SET street = '[redacted]', postcode = NULL,"
                              " user_id = NULL WHERE user_id = :id"))
    statements.append(sa.text("DELETE FROM users WHERE id = :id"))

    def one(user_id: int) -> None:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(statement, {"id": user_id})

    return one


def orm_erasure(session: Session) -> Callable[[int], None]:
    """The ORM cascade an application would write: load the user, delete, commit."""
    def one(user_id: int) -> None:
        user = session.get(User, user_id)
        if user is None:
            raise SystemExit(f"ORM baseline: user {user_id} is missing")
        session.delete(user)
        session.commit()

    return one


def interleaved(erasures: dict[str, tuple[Callable[[int], Any], list[int]]]
                ) -> dict[str, list[float]]:
    """Each erasure's latencies (ms), timed subject by subject in turn — one of each,
    then the next of each — so whatever the machine does meanwhile (a checkpoint,
    another process) falls on all of them alike, not on whichever ran first."""
    timings: dict[str, list[float]] = {name: [] for name in erasures}
    for turn in zip(*(ids for _, ids in erasures.values()), strict=True):
        for (name, (fn, _)), user_id in zip(erasures.items(), turn, strict=True):
            started = time.perf_counter()
            fn(user_id)
            timings[name].append((time.perf_counter() - started) * 1000)
    return timings


# -- the run ----------------------------------------------------------------------------
def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows per table, users included (default 1,000,000)")
    parser.add_argument("--subjects", type=int, default=200,
                        help="single-subject erasures, lethe and ORM each (default 200)")
    parser.add_argument("--bulk", type=int, default=2_000,
                        help="subjects in the bulk run (default 2,000)")
    parser.add_argument("--group-size", type=int, default=500,
                        help="bulk: erasure requests erased together (default 500)")
    parser.add_argument("--batch-size", type=int, default=10_000,
                        help="run_request batch size (default 10,000, lethe's default)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed erasures first, lethe and ORM each (default 5)")
    parser.add_argument("--profile", type=int, default=20,
                        help="lethe erasures to profile after the timed runs; 0: none")
    parser.add_argument("--phases", type=int, default=50,
                        help="single erasures timed phase by phase, apart (default 50)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    needed = 3 * args.subjects + args.bulk + 3 * args.warmup + args.profile + args.phases
    if needed > args.rows:
        parser.error(f"--rows must be at least {needed:,} (one distinct user per erasure)")

    picked = random.Random(args.seed).sample(range(1, args.rows + 1), needed)
    cut = iter(range(needed))
    def take(n: int) -> list[int]:
        return [picked[next(cut)] for _ in range(n)]
    lethe_warm, lethe_ids, bulk_ids = take(args.warmup), take(args.subjects), take(args.bulk)
    orm_warm, orm_ids, profile_ids = take(args.warmup), take(args.subjects), take(args.profile)
    floor_warm, floor_ids = take(args.warmup), take(args.subjects)
    phase_ids = take(args.phases)

    url = fresh_database(DB)
    engine = sa.create_engine(normalize_url(url))
    try:
        started = time.perf_counter()
        print(f"building 10 tables x {args.rows:,} rows ...", flush=True)
        build_graph(engine, args.rows)
        build_s = time.perf_counter() - started
        print(f"built in {build_s:.0f} s", flush=True)
        lethe_before = footprint(engine, lethe_ids + bulk_ids + phase_ids)
        lethe_addresses = address_ids(engine, lethe_ids + bulk_ids + phase_ids)
        orm_before = footprint(engine, orm_ids)
        floor_before = footprint(engine, floor_ids)

        with lethe_runtime(url) as (rt, out):
            single, orm, floor = measure_single(
                rt, out, engine, {"lethe": lethe_ids, "orm": orm_ids, "floor": floor_ids},
                {"lethe": lethe_warm, "orm": orm_warm, "floor": floor_warm}, args.batch_size)
            print(f"lethe single: p50 {single['p50_ms']:.1f} ms, p95 {single['p95_ms']:.1f} ms, "
                  f"max {single['max_ms']:.1f} ms; floor p50 {floor['p50_ms']:.1f} ms",
                  flush=True)
            single["phases_ms_per_subject"] = single_phases(rt, out, phase_ids,
                                                            args.batch_size)
            bulk = measure_lethe_bulk(rt, out, bulk_ids, args.batch_size, args.group_size)
            print(f"lethe bulk:   {bulk['subjects_per_s']:,.1f} subjects/s", flush=True)
            profile = profile_lethe(rt, out, profile_ids, args.batch_size) \
                if profile_ids else {}
            audit_ok = rt.audit.verify().ok
        floor_after = footprint(engine, floor_ids)

        lethe_after = footprint(engine, lethe_ids + bulk_ids + phase_ids)
        orm_after = footprint(engine, orm_ids)
        anonymized = anonymized_addresses(engine, lethe_addresses)
    finally:
        engine.dispose()
        drop_database(DB)

    checks = {
        "lethe_deleted_everything_but_payments_and_addresses":
            all(lethe_after[t] == 0 for t in ["users", *DELETED]),
        "lethe_anonymized_and_detached_addresses":
            lethe_after["addresses"] == 0 and anonymized == len(lethe_addresses),
        "lethe_kept_payments": lethe_after["payments"] == lethe_before["payments"],
        "orm_deleted_everything_but_payments":
            all(orm_after[t] == 0 for t in ["users", *DELETED, "addresses"]),
        "orm_kept_payments": orm_after["payments"] == orm_before["payments"],
        "floor_deleted_everything_but_payments":
            all(floor_after[t] == 0 for t in ["users", *DELETED, "addresses"]),
        "floor_kept_payments": floor_after["payments"] == floor_before["payments"],
        "bulk_all_completed": bulk["completed"] == bulk["subjects"],
        "audit_chain_verifies": audit_ok,
    }
    ratios = {
        "lethe_p50_over_orm_p50": ratio(single["p50_ms"], orm["p50_ms"]),
        "lethe_p95_over_orm_p95": ratio(single["p95_ms"], orm["p95_ms"]),
        "lethe_bulk_rate_over_orm_rate": ratio(bulk["subjects_per_s"], orm["subjects_per_s"]),
        "lethe_p50_over_floor_p50": ratio(single["p50_ms"], floor["p50_ms"]),
        "orm_p50_over_floor_p50": ratio(orm["p50_ms"], floor["p50_ms"]),
    }
    met = {"lethe_p50_over_floor_p50":
               ratios["lethe_p50_over_floor_p50"] <= TARGETS["lethe_p50_over_floor_p50"],
           "lethe_bulk_subjects_per_s":
               bulk["subjects_per_s"] >= TARGETS["lethe_bulk_subjects_per_s"]}

    print(f"\ngraph: users + {len(CHILDREN)} children, {args.rows:,} rows each "
          f"(built in {build_s:.0f} s); batch size {args.batch_size:,}")
    print(f"lethe one subject:  p50 {single['p50_ms']:8.1f} ms  p95 {single['p95_ms']:8.1f} ms"
          f"  max {single['max_ms']:8.1f} ms  ({single['subjects']} subjects, "
          f"{single['subjects_per_s']:.1f}/s; {single['rows_erased']} rows erased, "
          f"{single['rows_retained']} retained)")
    print(f"lethe bulk:         {bulk['subjects_per_s']:8.1f} subjects/s  ({bulk['subjects']:,} "
          f"requests: open {bulk['open_seconds']:.1f} s + run {bulk['run_seconds']:.1f} s)")
    print(f"ORM cascade:        p50 {orm['p50_ms']:8.1f} ms  p95 {orm['p95_ms']:8.1f} ms"
          f"  max {orm['max_ms']:8.1f} ms  ({orm['subjects']} subjects, "
          f"{orm['subjects_per_s']:.1f}/s)")
    print(f"hand-written floor: p50 {floor['p50_ms']:8.1f} ms  p95 {floor['p95_ms']:8.1f} ms"
          f"  max {floor['max_ms']:8.1f} ms  (the same rows by hand, one transaction each)")
    print(f"lethe / floor: p50 {ratios['lethe_p50_over_floor_p50']:.2f}x; ORM / floor: p50 "
          f"{ratios['orm_p50_over_floor_p50']:.2f}x")
    print(f"lethe / ORM: p50 {ratios['lethe_p50_over_orm_p50']:.2f}x, "
          f"p95 {ratios['lethe_p95_over_orm_p95']:.2f}x (latency, lower is better); "
          f"bulk rate {ratios['lethe_bulk_rate_over_orm_rate']:.2f}x (higher is better)")
    print(f"targets: p50 <= {TARGETS['lethe_p50_over_floor_p50']:.0f}x the floor "
          f"{'MET' if met['lethe_p50_over_floor_p50'] else 'MISSED'}; bulk >= "
          f"{TARGETS['lethe_bulk_subjects_per_s']:,.0f} subjects/s "
          f"{'MET' if met['lethe_bulk_subjects_per_s'] else 'MISSED'}")
    for title, phases in (("one subject", single["phases_ms_per_subject"]),
                          ("bulk, per subject", bulk["phases_ms_per_subject"])):
        print(f"where the time goes, {title}: " + ", ".join(
            f"{phase} {ms:.2f} ms" for phase, ms in sorted(phases.items(),
                                                           key=lambda kv: -kv[1])))
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    if profile:
        print(f"\nlethe profile, per single-subject erasure ({len(profile_ids)} profiled; "
              "cProfile inflates absolute times):")
        for title, key in (("lethe functions by cumulative time", "lethe_by_cumulative"),
                           ("all functions by own time", "all_by_own")):
            print(f"  {title}:")
            for row in profile[key]:
                print(f"  {row['cumulative_ms']:8.2f} ms cum  {row['own_ms']:7.2f} ms own  "
                      f"{row['calls_per_request']:7.1f} calls  {row['function']}")
    path = write_result("dsar", {
        "rows_per_table": args.rows, "tables": 1 + len(CHILDREN), "lethe": lethe_revision(),
        "control_store": "sqlite (temporary directory)", "build_seconds": build_s,
        "lethe_single": single, "lethe_bulk": bulk, "orm_cascade": orm,
        "hand_written_floor": floor, "ratios": ratios,
        "targets": TARGETS, "targets_met": met, "checks": checks,
        "linked_rows_before": {"lethe": lethe_before, "orm": orm_before},
        "lethe_profile": profile})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
