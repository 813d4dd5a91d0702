"""A workspace's termination killed mid-run (issue 22, item 3): `lethe request run ID`
SIGKILLed while it erases, then run again. The data ends as an uninterrupted run leaves
it — the workspace gone, the other untouched — and the one certificate counts every row,
those the killed run erased included."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.stores.sql import normalize_url
from tests.requests.crash_support import argv, count, lethe

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NOW_ARG = "2026-06-01T00:00:00Z"
USERS, IN_A = 3_000, 2_000  # users 1..2000 are ws_a's, the rest ws_b's
SESSIONS_PER_USER = 4
EVENTS = 6_000  # odd ids ws_a's

POLICY = """\
lethe: 1
organization: Crash Test
control: sqlite:///state.db
stores: {{app: {{url: "{url}"}}}}
termination: {{within: 90d}}
subjects: {{user: {{dataset: users, identities: [email, id]}}}}
datasets:
  users: {{store: app, table: users, class: pii, workspace: workspace_id}}
  sessions: {{store: app, table: sessions, class: operational, belongs_to: {{users: user_id}}}}
  events: {{store: app, table: events, class: behavioral, workspace: workspace_id}}
"""


def test_a_killed_termination_resumes_to_the_same_end(postgres_url: str,
                                                      tmp_path: Path) -> None:
    engine = sa.create_engine(normalize_url(postgres_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL,"
                             " workspace_id text)"))
        conn.execute(sa.text("CREATE TABLE sessions (id int PRIMARY KEY, user_id int"
                             " REFERENCES users (id))"))
        conn.execute(sa.text("CREATE INDEX ON sessions (user_id)"))
        conn.execute(sa.text("CREATE TABLE events (id int PRIMARY KEY, workspace_id text)"))
        conn.execute(sa.text(
            "INSERT INTO users SELECT g, 'user' || g || '@example.com',"
            " CASE WHEN g <= :a THEN 'ws_a' ELSE 'ws_b' END"
            " FROM generate_series(1, :n) g"), {"n": USERS, "a": IN_A})
        conn.execute(sa.text("INSERT INTO sessions SELECT g, 1 + (g - 1) % :n"
                             " FROM generate_series(1, :n * :k) g"),
                     {"n": USERS, "k": SESSIONS_PER_USER})
        conn.execute(sa.text(
            "INSERT INTO events SELECT g, CASE WHEN g % 2 = 1 THEN 'ws_a' ELSE 'ws_b' END"
            " FROM generate_series(1, :n) g"), {"n": EVENTS})
    policy = tmp_path / "lethe.yaml"
    policy.write_text(POLICY.format(url=postgres_url), encoding="utf-8")
    common = ["--policy", str(policy), "--now", NOW_ARG]
    opened = lethe("request", "open", "erasure", "--workspace", "ws_a", "--json", *common)
    out = tmp_path / "certificates"
    run = ["request", "run", str(opened["id"]), "--batch-size", "50", "--out", str(out),
           "--json", *common]
    all_sessions = USERS * SESSIONS_PER_USER
    with (tmp_path / "killed.log").open("w") as log:
        proc = subprocess.Popen(argv(*run), stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "NO_COLOR": "1"})
        started = time.monotonic()
        try:  # kill part way through the sessions (the first dataset it erases)
            while count(engine, "SELECT count(*) FROM sessions") > all_sessions * 0.6:
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()
                assert time.monotonic() - started < 120, "the run never got going"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert count(engine, "SELECT count(*) FROM users") == USERS, "killed after the users"

    finished = lethe(*run)
    assert finished["status"] == "completed", finished
    assert lethe("audit", "verify", "--json", *common)["ok"] is True
    with engine.connect() as conn:
        users = conn.execute(sa.text("SELECT id FROM users ORDER BY id")).scalars().all()
        owners = conn.execute(sa.text("SELECT DISTINCT user_id FROM sessions")).scalars().all()
        workspaces = conn.execute(sa.text("SELECT DISTINCT workspace_id FROM events")
                                  ).scalars().all()
    assert users == list(range(IN_A + 1, USERS + 1))
    assert sorted(owners) == users
    assert workspaces == ["ws_b"]
    assert count(engine, "SELECT count(*) FROM events") == EVENTS // 2
    certificates = sorted(out.glob("request-*-certificate.json"))
    assert len(certificates) == 1
    document = load_certificate(certificates[0])
    assert verify_certificate(document).ok
    counts = {d["dataset"]: (d["rows"], d["erased"]) for d in
              document["certificate"]["datasets"]}
    assert counts == {"sessions": (IN_A * SESSIONS_PER_USER, IN_A * SESSIONS_PER_USER),
                      "users": (IN_A, IN_A), "events": (EVENTS // 2, EVENTS // 2)}
    engine.dispose()
