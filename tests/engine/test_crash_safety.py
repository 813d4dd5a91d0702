"""Crash safety on PostgreSQL: `lethe run` killed with SIGKILL, then run again.

Spec §2: a run killed at any point and started again finishes the job and loses
nothing that policy says to keep. The test builds one data set (kept pristine in a
separate schema), computes the expected end state independently, runs lethe once
uninterrupted as the reference, then for several kill points: restores the data,
starts `lethe run`, SIGKILLs it at that point, checks it really died mid-run, runs it
again to completion and compares every row of every table with the reference.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lethe.stores.sql import normalize_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NOW = datetime(2026, 6, 1, tzinfo=UTC)
NOW_ARG = "2026-06-01T00:00:00Z"
BATCH = "500"
SEED = 20260601

N_USERS = 3_000
N_SESSIONS = 20_000
N_EVENTS = 40_000
N_ANALYTICS = 20_000

HELD_BY_ID = 17  # closed and soft-deleted long ago: the purge would remove it
HELD_BY_EMAIL = 13  # closed long ago, not yet soft-deleted: the rule would soft-delete it
TABLES = ("users", "sessions", "events", "analytics")

POLICY = """\
lethe: 1
organization: Crash Test
control: sqlite:///state.db
stores: {{app: {{url: "{url}"}}}}
subjects: {{user: {{dataset: users, identities: [email, id]}}}}
datasets:
  users:
    store: app
    table: users
    class: pii
    fields: {{email: {{class: pii, anonymize: mask-email}}}}
    soft_delete: {{column: deleted_at, recover_for: 30d}}
    retention: [{{keep: 90d, after: closed_at, action: soft-delete}}]
  sessions:
    store: app
    table: sessions
    class: operational
    belongs_to: {{users: user_id}}
    retention: [{{keep: 30d, after: last_seen_at}}]
  events:
    store: app
    table: events
    class: behavioral
    retention:
      - {{when: {{status: processed}}, keep: 7d, after: received_at}}
      - {{when: {{status: failed}}, keep: 30d, after: received_at}}
  analytics:
    store: app
    table: analytics
    class: behavioral
    fields: {{ip: {{class: pii, anonymize: "null"}}}}
    retention: [{{keep: 90d, after: occurred_at, action: anonymize}}]
"""

Rows = list[tuple[Any, ...]]
Snapshot = dict[str, Rows]


# -- the data -------------------------------------------------------------------------------

def _tables(schema: str | None) -> sa.MetaData:
    md = sa.MetaData(schema=schema)
    ts = sa.DateTime(timezone=True)
    sa.Table("users", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("email", sa.Text, nullable=False),
             sa.Column("name", sa.Text),
             sa.Column("closed_at", ts),
             sa.Column("deleted_at", ts))
    sa.Table("sessions", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id")),
             sa.Column("token", sa.Text, nullable=False),
             sa.Column("last_seen_at", ts))
    sa.Table("events", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("status", sa.Text),
             sa.Column("payload", sa.Text),
             sa.Column("received_at", ts))
    sa.Table("analytics", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("ip", sa.Text),
             sa.Column("page", sa.Text, nullable=False),
             sa.Column("occurred_at", ts))
    return md


def _generate() -> dict[str, list[dict[str, Any]]]:
    """Deterministic rows; ages carry microseconds so none sits exactly on a cutoff."""
    rng = random.Random(SEED)

    def ago(lo: float, hi: float) -> datetime:
        return NOW - timedelta(days=rng.uniform(lo, hi), microseconds=rng.randint(1, 999_999))

    users = []
    for i in range(1, N_USERS + 1):
        kind = i % 20
        closed = deleted = None
        if 8 <= kind <= 11:  # closed recently: kept
            closed = ago(1, 85)
        elif 12 <= kind <= 15:  # closed long ago: soft-deleted by this run
            closed = ago(95, 700)
        elif 16 <= kind <= 18:  # soft-deleted more than 30 days ago: purged
            closed = ago(200, 700)
            deleted = ago(35, 180)
        elif kind == 19:  # soft-deleted recently: still recoverable, kept
            closed = ago(100, 700)
            deleted = ago(1, 25)
        users.append({"id": i, "email": f"user{i}@example.com",
                      "name": None if i % 7 == 0 else f"User {i}",
                      "closed_at": closed, "deleted_at": deleted})

    sessions = []
    for i in range(1, N_SESSIONS + 1):
        r = rng.random()
        user_id = None if r < 0.02 else rng.randint(1, N_USERS)
        seen = None if rng.random() < 0.05 else ago(0, 90)
        if i <= 12:  # the held users have sessions old enough to go, and recent ones
            user_id = HELD_BY_ID if i % 2 else HELD_BY_EMAIL
            seen = ago(40, 80) if i <= 8 else ago(0, 5)
        sessions.append({"id": i, "user_id": user_id, "token": f"tok-{rng.getrandbits(48):x}",
                         "last_seen_at": seen})

    statuses = ["processed"] * 10 + ["failed"] * 4 + ["pending"] * 4 + [None, "archived"]
    events = []
    for i in range(1, N_EVENTS + 1):
        received = None if rng.random() < 0.03 else ago(0, 60)
        events.append({"id": i, "status": rng.choice(statuses),
                       "payload": f'{{"n": {i}}}', "received_at": received})

    analytics = []
    for i in range(1, N_ANALYTICS + 1):
        ip = None if rng.random() < 0.1 else \
            f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        occurred = None if rng.random() < 0.03 else ago(0, 200)
        analytics.append({"id": i, "ip": ip, "page": f"/p/{i % 97}", "occurred_at": occurred})

    return {"users": users, "sessions": sessions, "events": events, "analytics": analytics}


def _expected(data: dict[str, list[dict[str, Any]]]) -> Snapshot:
    """The end state the policy prescribes, computed without lethe."""

    def older(value: datetime | None, days: int) -> bool:
        return value is not None and value < NOW - timedelta(days=days)

    held_users = {HELD_BY_ID, HELD_BY_EMAIL}
    users: Rows = []
    purged: set[int] = set()
    for u in data["users"]:
        held = u["id"] in held_users
        if not held and older(u["deleted_at"], 30):
            purged.add(u["id"])
            continue
        deleted = u["deleted_at"]
        if not held and deleted is None and older(u["closed_at"], 90):
            deleted = NOW
        users.append((u["id"], u["email"], u["name"], u["closed_at"], deleted))

    sessions: Rows = []
    for s in data["sessions"]:
        if s["user_id"] in purged:
            continue
        if s["user_id"] not in held_users and older(s["last_seen_at"], 30):
            continue
        sessions.append((s["id"], s["user_id"], s["token"], s["last_seen_at"]))

    events: Rows = []
    for e in data["events"]:
        if e["status"] == "processed" and older(e["received_at"], 7):
            continue
        if e["status"] == "failed" and older(e["received_at"], 30):
            continue
        events.append((e["id"], e["status"], e["payload"], e["received_at"]))

    analytics: Rows = []
    for a in data["analytics"]:
        ip = None if older(a["occurred_at"], 90) else a["ip"]
        analytics.append((a["id"], ip, a["page"], a["occurred_at"]))

    return {"users": users, "sessions": sessions, "events": events, "analytics": analytics}


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(normalize_url(postgres_url), isolation_level="AUTOCOMMIT")
    try:
        yield eng
    finally:
        eng.dispose()


def _build_pristine(engine: sa.Engine, data: dict[str, list[dict[str, Any]]]) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE SCHEMA pristine"))
        md = _tables("pristine")
        md.create_all(conn)
        for name in TABLES:
            conn.execute(md.tables[f"pristine.{name}"].insert(), data[name])
        _tables(None).create_all(conn)


def _restore(engine: sa.Engine) -> None:
    """Put the pristine rows back into the tables lethe works on."""
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE " + ", ".join(f"public.{t}" for t in TABLES)))
        for name in TABLES:  # users before sessions: the foreign key
            conn.execute(sa.text(f"INSERT INTO public.{name} SELECT * FROM pristine.{name}"))


def _snapshot(engine: sa.Engine) -> Snapshot:
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(
            sa.text(f"SELECT * FROM public.{name} ORDER BY id"))] for name in TABLES}


def _count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), {"now": NOW}).scalar_one())


# -- driving lethe ----------------------------------------------------------------------------

def _lethe_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "from lethe.cli.app import main; main()", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "LETHE_DEBUG": "1", "NO_COLOR": "1"}


def _lethe(*args: str, timeout: float = 120) -> dict[str, Any]:
    proc = subprocess.run(_lethe_argv(*args), capture_output=True, text=True, env=_env(),
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"lethe {' '.join(args)} exited {proc.returncode}:\n" \
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _control_template(directory: Path, url: str) -> Path:
    """A policy and a control store holding only the holds (placed before any run)."""
    directory.mkdir()
    policy = directory / "lethe.yaml"
    policy.write_text(POLICY.format(url=url), encoding="utf-8")
    for key in (str(HELD_BY_ID), f"user{HELD_BY_EMAIL}@example.com"):
        placed = _lethe("hold", "place", "--policy", str(policy), "--subject", f"user:{key}",
                        "--reason", "litigation", "--now", NOW_ARG, "--json")
        assert isinstance(placed["id"], int)
    return directory


def _fresh_control(template: Path, directory: Path) -> Path:
    """Each scenario starts from its own copy: the holds, no runs yet (no process has the
    template open, so copying the SQLite file is safe)."""
    shutil.copytree(template, directory)
    return directory / "lethe.yaml"


def _run(policy: Path) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    result = _lethe("run", "--policy", str(policy), "--now", NOW_ARG, "--batch-size", BATCH,
                    "--json")
    return result, time.monotonic() - started


def _assert_complete(result: dict[str, Any]) -> None:
    assert result["now"].startswith("2026-06-01T00:00:00")
    for action in result["actions"]:
        assert action["verified"] is True, action
        assert "error" not in action, action


# -- kill points ----------------------------------------------------------------------------

Trigger = Callable[[sa.Engine, float], bool]  # (engine, seconds since start) -> kill now?


@dataclass(frozen=True)
class KillPoint:
    name: str
    trigger: Trigger
    must_be_partial: bool  # the data must be strictly between start and end when killed


def after_seconds(seconds: float) -> Trigger:
    return lambda _engine, elapsed: elapsed >= seconds


def when_count(sql: str, test: Callable[[int], bool]) -> Trigger:
    return lambda engine, _elapsed: test(_count(engine, sql))


def _kill_at(policy: Path, engine: sa.Engine, point: KillPoint, log: Path) -> float:
    """Start `lethe run`, SIGKILL it when the point is reached; return when that was."""
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(_lethe_argv("run", "--policy", str(policy), "--now", NOW_ARG,
                                            "--batch-size", BATCH, "--json"),
                                stdout=out, stderr=subprocess.STDOUT, env=_env())
        started = time.monotonic()
        try:
            while True:
                elapsed = time.monotonic() - started
                if proc.poll() is not None:
                    pytest.fail(f"lethe run ended (exit {proc.returncode}) after {elapsed:.2f}s "
                                f"before kill point {point.name!r}: {log.read_text()}")
                if elapsed > 60:
                    pytest.fail(f"kill point {point.name!r} never reached")
                if point.trigger(engine, elapsed):
                    break
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"{point.name}: exit {proc.returncode}"
    return elapsed


def _scenarios(reference_seconds: float) -> list[list[KillPoint]]:
    """Each scenario: kill at each point in turn (one run per point), then run to the end.

    Plan order: sessions[0] delete, sessions cascade (inside the users purge), users[0]
    soft-delete, users purge, events[0], events[1], analytics[0] anonymize. Timed points are
    0.3 s (usually still starting up or planning) and a fraction of the uninterrupted run,
    so it stays mid-run on faster or slower machines.
    """

    def timed(seconds: float) -> KillPoint:
        return KillPoint(f"{seconds:.2f}s after start", after_seconds(seconds), False)

    first_batch = KillPoint("first batch committed", when_count(
        "SELECT count(*) FROM sessions", lambda n: n < N_SESSIONS), True)
    soft_delete = KillPoint("users soft-delete begun", when_count(
        "SELECT count(*) FROM users WHERE deleted_at = :now", lambda n: n > 0), True)
    purge = KillPoint("users purge begun", when_count(
        "SELECT count(*) FROM users", lambda n: n < N_USERS), True)
    events = KillPoint("events 20% swept", when_count(
        "SELECT count(*) FROM events", lambda n: n < N_EVENTS * 0.8), True)
    analytics = KillPoint("analytics anonymize begun", when_count(
        "SELECT count(*) FROM analytics WHERE ip IS NULL", lambda n: n > N_ANALYTICS * 0.12),
        True)
    return [[timed(0.3)], [first_batch], [timed(min(reference_seconds * 0.45, 1.2))], [soft_delete],
            [purge], [events], [analytics], [purge, analytics]]


def _differences(got: Snapshot, want: Snapshot) -> str:
    lines = []
    for name in TABLES:
        a, b = set(got[name]), set(want[name])
        if a != b or len(got[name]) != len(want[name]):
            lines.append(f"{name}: {len(got[name])} rows vs {len(want[name])}; "
                         f"unexpected {sorted(a - b)[:3]}; missing {sorted(b - a)[:3]}")
    return "\n".join(lines)


def test_sigkilled_run_resumes_to_the_uninterrupted_end_state(
        postgres_url: str, engine: sa.Engine, tmp_path: Path) -> None:
    data = _generate()
    expected = _expected(data)
    _build_pristine(engine, data)
    _restore(engine)
    initial = _snapshot(engine)

    # Sanity: the data exercises every path (these counts are what makes the kill points mean
    # something; they do not depend on lethe).
    assert len(expected["users"]) < N_USERS
    assert len(expected["sessions"]) < N_SESSIONS and len(expected["events"]) < N_EVENTS
    assert any(u[4] == NOW for u in expected["users"])
    assert any(e[3] is None for e in expected["events"])

    held_ids = (HELD_BY_ID, HELD_BY_EMAIL)
    held_sessions = sum(s["user_id"] in held_ids for s in data["sessions"])
    held_old_sessions = sum(s["user_id"] in held_ids and s["last_seen_at"] is not None
                            and s["last_seen_at"] < NOW - timedelta(days=30)
                            for s in data["sessions"])
    assert held_old_sessions >= 8

    # Reference: one uninterrupted run.
    template = _control_template(tmp_path / "template", postgres_url)
    policy = _fresh_control(template, tmp_path / "reference")
    result, reference_seconds = _run(policy)
    _assert_complete(result)
    reference = _snapshot(engine)
    assert reference == expected, "uninterrupted run differs from the policy's end state:\n" \
        + _differences(reference, expected)

    timings = [f"reference run {reference_seconds:.2f}s"]
    partial_seen = 0
    for number, points in enumerate(_scenarios(reference_seconds)):
        _restore(engine)
        assert _snapshot(engine) == initial
        policy = _fresh_control(template, tmp_path / f"scenario{number}")
        label = " then ".join(p.name for p in points)
        notes = []
        for turn, point in enumerate(points):
            killed_after = _kill_at(policy, engine, point,
                                    tmp_path / f"scenario{number}-{turn}.log")
            partial = _snapshot(engine) not in (initial, reference)
            partial_seen += partial
            if point.must_be_partial:
                assert partial, f"{label}: the kill at {point.name!r} did not land mid-run"
            notes.append(f"killed at {killed_after:.2f}s "
                         f"({'partial' if partial else 'no change yet'})")

        result, resumed_seconds = _run(policy)
        _assert_complete(result)
        final = _snapshot(engine)
        assert final == reference, f"after SIGKILL at {label!r} and a rerun, the end state " \
            "differs from the uninterrupted run's:\n" + _differences(final, reference)
        timings.append(f"{label}: {', '.join(notes)}, rerun {resumed_seconds:.2f}s")

    assert partial_seen >= 1

    # After the last rerun: nothing is left due, and what the holds keep is still there.
    plan = _lethe("plan", "--policy", str(policy), "--now", NOW_ARG, "--json")
    assert [a for a in plan["actions"] if a["rows"] != 0] == []
    held = {(a["dataset"], a["rule"], a["action"]): a["held"] for a in plan["actions"]}
    assert held[("users", None, "purge")] == 1
    assert held[("users", 0, "soft-delete")] == 1
    assert held[("sessions", 0, "delete")] == held_old_sessions
    assert _count(engine, f"SELECT count(*) FROM users WHERE id IN "
                          f"({HELD_BY_ID}, {HELD_BY_EMAIL}) AND deleted_at IS NOT DISTINCT "
                          f"FROM (SELECT deleted_at FROM pristine.users p "
                          f"WHERE p.id = users.id)") == 2
    assert _count(engine, f"SELECT count(*) FROM sessions WHERE user_id IN "
                          f"({HELD_BY_ID}, {HELD_BY_EMAIL})") == held_sessions
    print("\n".join(timings))
