"""Bulk erasure killed mid-run: `lethe request run --all` SIGKILLed while it erases, then
run again. The data ends exactly as if nothing had happened; every request completes
with a certificate that verifies; nothing anyone did not ask to erase is touched."""

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
USERS = 1_500
ERASED = range(1, 1_201)  # users asked for
SESSIONS_PER_USER = 4

POLICY = """\
lethe: 1
organization: Crash Test
control: sqlite:///state.db
stores: {{app: {{url: "{url}"}}}}
subjects: {{user: {{dataset: users, identities: [email, id]}}}}
datasets:
  users: {{store: app, table: users, class: pii}}
  sessions: {{store: app, table: sessions, class: operational, belongs_to: {{users: user_id}}}}
  invoices:
    store: app
    table: invoices
    class: operational
    belongs_to: {{users: user_id}}
    erasure: retain
    legal_basis: "tax law"
"""


def test_killed_bulk_erasure_resumes_to_the_same_end(postgres_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(normalize_url(postgres_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL)"))
        conn.execute(sa.text("CREATE TABLE sessions (id int PRIMARY KEY, user_id int)"))
        conn.execute(sa.text("CREATE INDEX ON sessions (user_id)"))
        conn.execute(sa.text("CREATE TABLE invoices (id int PRIMARY KEY, user_id int)"))
        conn.execute(sa.text("INSERT INTO users SELECT g, 'user' || g || '@example.com'"
                             " FROM generate_series(1, :n) g"), {"n": USERS})
        conn.execute(sa.text("INSERT INTO sessions SELECT g, 1 + (g - 1) % :n"
                             " FROM generate_series(1, :n * :k) g"),
                     {"n": USERS, "k": SESSIONS_PER_USER})
        conn.execute(sa.text("INSERT INTO invoices SELECT g, g FROM generate_series(1, :n) g"),
                     {"n": USERS})
    policy = tmp_path / "lethe.yaml"
    policy.write_text(POLICY.format(url=postgres_url), encoding="utf-8")
    subjects = tmp_path / "subjects.csv"
    subjects.write_text("email\n" + "".join(f"user{i}@example.com\n" for i in ERASED),
                        encoding="utf-8")
    common = ["--policy", str(policy), "--now", NOW_ARG]
    opened = lethe("request", "open", "erasure", "--subject", "user", "--from-file",
                    str(subjects), "--json", *common)
    assert len(opened["requests"]) == len(ERASED)

    out = tmp_path / "certificates"
    run = ["request", "run", "--all", "--certificate-files", "--group-size", "100",
           "--batch-size", "40",
           "--out", str(out), "--json", *common]
    all_sessions = USERS * SESSIONS_PER_USER
    with (tmp_path / "killed.log").open("w") as log:
        proc = subprocess.Popen(argv(*run), stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "NO_COLOR": "1"})
        started = time.monotonic()
        try:
            # kill once some groups are done and more are to come
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
    left = count(engine, "SELECT count(*) FROM users")
    assert USERS - len(ERASED) < left < USERS, "killed before it began or after it ended"

    finished = lethe(*run)
    statuses = {r["status"] for r in finished["requests"]}
    assert statuses == {"completed"}, statuses
    assert lethe("audit", "verify", "--json", *common)["ok"] is True

    # the end state of an uninterrupted run: exactly the users asked for are gone
    with engine.connect() as conn:
        users = conn.execute(sa.text("SELECT id FROM users ORDER BY id")).scalars().all()
        owners = conn.execute(sa.text("SELECT DISTINCT user_id FROM sessions")).scalars().all()
    assert users == list(range(len(ERASED) + 1, USERS + 1))
    assert sorted(owners) == users
    assert count(engine, "SELECT count(*) FROM sessions") == \
        (USERS - len(ERASED)) * SESSIONS_PER_USER
    assert count(engine, "SELECT count(*) FROM invoices") == USERS  # retained

    # every request has one certificate that verifies and counts every row it erased,
    # those a killed run erased before writing its audit entries included
    certificates = sorted(out.glob("request-*-certificate.json"))
    assert len(certificates) == len(ERASED)
    for path in certificates:
        document = load_certificate(path)
        assert verify_certificate(document).ok
        counts = {d["dataset"]: {k: d[k] for k in ("rows", "erased", "retained", "held")}
                  for d in document["certificate"]["datasets"]}
        assert counts == {
            "sessions": {"rows": SESSIONS_PER_USER, "erased": SESSIONS_PER_USER,
                         "retained": 0, "held": 0},
            "invoices": {"rows": 1, "erased": 0, "retained": 1, "held": 0},
            "users": {"rows": 1, "erased": 1, "retained": 0, "held": 0}}, path.name
    engine.dispose()
