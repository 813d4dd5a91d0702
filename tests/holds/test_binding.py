"""A hold binds the instant `hold place` returns: proof with concurrent runners.

Three `lethe run` processes sweep one PostgreSQL table while this test places subject
holds at random instants. A trigger logs every deleted row with the database clock;
right after each `place_hold` returns, the test reads that clock. A held row deleted
after that reading would be a hold that did not bind. Each deleted row also sleeps
briefly in the trigger, so every batch spends long between reading the holds and
committing: without the hold gate, holds land inside that window all the time.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from lethe.clock import Clock
from lethe.holds import parse_scope, place_hold
from lethe.policy.load import load_policy
from lethe.runtime import Runtime
from lethe.stores.sql import normalize_url

NOW = datetime(2026, 6, 1, tzinfo=UTC)
USERS = 100
EVENTS_PER_USER = 60


def _build(url: str) -> sa.Engine:
    engine = sa.create_engine(normalize_url(url))
    old = NOW - timedelta(days=90)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id integer PRIMARY KEY, email text)"))
        conn.execute(sa.text("CREATE TABLE events (id integer PRIMARY KEY, user_id integer, "
                             "ts timestamptz NOT NULL)"))
        conn.execute(sa.text("CREATE INDEX events_user ON events (user_id)"))
        conn.execute(sa.text("CREATE TABLE deleted_log (id integer, user_id integer, "
                             "at timestamptz)"))
        conn.execute(sa.text(
            "CREATE FUNCTION log_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "PERFORM pg_sleep(0.002); "
            "INSERT INTO deleted_log VALUES (OLD.id, OLD.user_id, clock_timestamp()); "
            "RETURN OLD; END $$"))
        conn.execute(sa.text("CREATE TRIGGER events_logged BEFORE DELETE ON events "
                             "FOR EACH ROW EXECUTE FUNCTION log_delete()"))
        conn.execute(sa.text("INSERT INTO users SELECT g, 'u' || g || '@example.com' "
                             "FROM generate_series(1, :n) g"), {"n": USERS})
        # rows of all users interleaved in key order: every batch holds rows of every user
        conn.execute(sa.text(
            "INSERT INTO events SELECT g, 1 + (g % :u), :ts FROM generate_series(1, :n) g"),
            {"u": USERS, "n": USERS * EVENTS_PER_USER, "ts": old})
    return engine


def _policy(directory: Path, url: str) -> Path:
    policy = {
        "lethe": 1, "organization": "Binding Inc", "control": url,
        "audit": {"key": str(directory / "audit.key")},
        "stores": {"app": {"url": url, "region": "us"}},
        "subjects": {"user": {"dataset": "users", "identities": ["email", "id"]}},
        "datasets": {
            "users": {"store": "app", "table": "users", "class": "pii"},
            "events": {"store": "app", "table": "events", "class": "behavioral",
                       "belongs_to": {"users": "user_id"},
                       "retention": [{"keep": "30d", "after": "ts"}]},
        },
    }
    path = directory / "lethe.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.postgres
def test_no_held_row_is_deleted_after_hold_place_returns(postgres_url: str,
                                                         tmp_path: Path) -> None:
    engine = _build(postgres_url)
    policy_path = _policy(tmp_path, postgres_url)
    rt = Runtime.open(load_policy(policy_path), Clock(NOW))  # migrates the control store
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    runners = [subprocess.Popen(
        [sys.executable, "-c", "from lethe.cli.app import main; main()",
         "--policy", str(policy_path), "run",
         "--now", NOW.isoformat(), "--batch-size", "200", "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) for _ in range(3)]
    chooser = random.Random(16)
    placed: dict[int, datetime] = {}  # user id -> database time just after place returned
    try:
        with engine.connect() as conn:
            while any(r.poll() is None for r in runners) and len(placed) < 40:
                time.sleep(chooser.uniform(0.0, 0.15))
                user = chooser.randrange(1, USERS + 1)
                if user in placed:
                    continue
                scope = parse_scope(rt.policy, f"user:u{user}@example.com", None, None)
                place_hold(rt.control, rt.audit, rt.clock, scope, "case 16")
                placed[user] = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
                conn.commit()
        errors = [r.communicate(timeout=300)[1] for r in runners]
    finally:
        for r in runners:
            if r.poll() is None:
                r.kill()
        rt.close()
    assert all(r.returncode == 0 for r in runners), errors
    with engine.connect() as conn:
        late = {user: conn.execute(sa.text(
            "SELECT count(*) FROM deleted_log WHERE user_id = :u AND at > :t"),
            {"u": user, "t": at}).scalar_one() for user, at in placed.items()}
        kept = conn.execute(sa.text("SELECT count(*) FROM events WHERE user_id = ANY(:u)"),
                            {"u": list(placed)}).scalar_one()
        others_left = conn.execute(sa.text(
            "SELECT count(*) FROM events WHERE NOT user_id = ANY(:u)"),
            {"u": list(placed)}).scalar_one()
        during = conn.execute(sa.text("SELECT count(*) FROM deleted_log WHERE at > :t"),
                              {"t": min(placed.values())}).scalar_one()
    assert len(placed) >= 10 and during > 0  # holds really landed while rows were going
    assert kept > 0  # and some held rows were still there to keep
    assert sum(late.values()) == 0, {u: n for u, n in late.items() if n}
    assert others_left == 0  # everything not held went


def test_an_in_memory_control_stores_lock_file_goes_with_its_gate() -> None:
    import gc
    import os

    import sqlalchemy as sa

    from lethe.holds.gate import HoldGate

    engine = sa.create_engine("sqlite://")
    gate = HoldGate(engine)
    with gate.shared():
        path = gate._path
        assert path is not None and os.path.exists(path)
    del gate
    gc.collect()
    assert not os.path.exists(path)
