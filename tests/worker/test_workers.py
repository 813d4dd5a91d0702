"""Several `lethe worker` processes on one PostgreSQL control store: each unit of work
done exactly once; a worker killed mid-lease is taken over; SIGTERM ends on a batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lethe.stores.sql import normalize_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NOW_ARG = "2026-06-01T03:00:00Z"  # after the nightly 02:00 occurrence
TABLES = ("t_events", "t_logs", "t_metrics", "t_clicks", "t_jobs", "t_mails")
ROWS = 30_000  # per table; two thirds are due

POLICY = """\
lethe: 1
organization: Worker Test
control: "{url}"
stores: {{app: {{url: "{url}"}}}}
datasets:
{datasets}
schedules:
  nightly: {{cron: "0 2 * * *", datasets: all}}
"""


@pytest.fixture
def setup(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Path, sa.Engine]]:
    engine = sa.create_engine(normalize_url(postgres_url))
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(sa.text(f"CREATE TABLE {table} (id bigint PRIMARY KEY, at timestamptz)"))
            conn.execute(sa.text(
                f"INSERT INTO {table} SELECT g, TIMESTAMPTZ '2026-06-01' - g * INTERVAL '1 hour'"
                " / 24 FROM generate_series(1, :n) g"), {"n": ROWS})
    datasets = "\n".join(
        f"  {t}: {{store: app, table: {t}, class: operational, "
        f"retention: [{{keep: 30d, after: at}}]}}" for t in TABLES)
    policy = tmp_path / "lethe.yaml"
    policy.write_text(POLICY.format(url=postgres_url, datasets=datasets), encoding="utf-8")
    yield policy, engine
    engine.dispose()


def _due(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return sum(int(conn.execute(sa.text(
            f"SELECT count(*) FROM {t} WHERE at < TIMESTAMPTZ '2026-05-02 03:00:00+00'"))
            .scalar_one()) for t in TABLES)


def _left(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return sum(int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
                   for t in TABLES)


def _worker(policy: Path, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", "from lethe.cli.app import main; main()", "worker",
            "--policy", str(policy), "--now", NOW_ARG, "--json", "--poll-seconds", "0.5", "--once",
            *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})


def _result(proc: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def _retention_entries(engine: sa.Engine) -> dict[str, list[int]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT target, details FROM lethe_audit "
                                    "WHERE action = 'retention.delete'")).all()
    found: dict[str, list[int]] = {}
    for target, details in rows:
        found.setdefault(target.removeprefix("dataset:"), []).append(json.loads(details)["done"])
    return found


def _wait_for(test: Any, timeout: float = 60) -> None:
    started = time.monotonic()
    while not test():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.05)


def test_three_workers_share_a_schedule_exactly_once(setup: tuple[Path, sa.Engine]) -> None:
    policy, engine = setup
    due, total = _due(engine), _left(engine)
    assert due > 0
    procs = [_worker(policy, "--name", f"w{i}", "--batch-size", "300") for i in range(3)]
    results = [_result(p) for p in procs]
    assert _due(engine) == 0 and _left(engine) == total - due
    units = [u for r in results for u in r["units"]]
    assert sorted(u["dataset"] for u in units) == sorted(TABLES)  # each unit once
    assert all(u["status"] == "done" and u["verified"] for u in units)
    assert sum(u["done"] for u in units) == due
    entries = _retention_entries(engine)
    assert sorted(entries) == sorted(TABLES)
    assert all(len(done) == 1 for done in entries.values())  # one audit entry per dataset
    assert sum(d for done in entries.values() for d in done) == due
    assert len({r["worker"] for r in results if r["units"]}) >= 2  # the work was shared
    with engine.connect() as conn:
        states = dict(conn.execute(sa.text("SELECT unit, state FROM lethe_leases")).all())
    assert len(states) == len(TABLES) and set(states.values()) == {"done"}


def test_a_worker_killed_mid_lease_is_taken_over(setup: tuple[Path, sa.Engine]) -> None:
    policy, engine = setup
    due, total = _due(engine), _left(engine)
    first = _worker(policy, "--name", "doomed", "--batch-size", "100", "--lease-seconds", "3")
    _wait_for(lambda: _left(engine) < total - 500)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert _left(engine) > total - due  # killed with work left
    rest = [_worker(policy, "--name", f"w{i}", "--batch-size", "300", "--lease-seconds", "3")
            for i in range(2)]
    results = [_result(p) for p in rest]
    assert _due(engine) == 0 and _left(engine) == total - due
    units = [u for r in results for u in r["units"]]
    taken = [u for u in units if u["takeover"]]
    assert len(taken) == 1 and taken[0]["status"] == "done"  # after the dead one's lease
    with engine.connect() as conn:
        leases = conn.execute(sa.text(
            "SELECT unit, holder, state, takeovers FROM lethe_leases")).all()
    assert len(leases) == len(TABLES) and {row.state for row in leases} == {"done"}
    taker = next(r["worker"] for r in results if taken[0] in r["units"])
    assert [row.holder for row in leases if row.takeovers] == [taker]


def test_sigterm_finishes_the_batch_and_hands_the_unit_back(
        setup: tuple[Path, sa.Engine]) -> None:
    policy, engine = setup
    due, total = _due(engine), _left(engine)
    proc = _worker(policy, "--name", "polite", "--batch-size", "100")
    _wait_for(lambda: _left(engine) < total - 300)
    proc.send_signal(signal.SIGTERM)
    result = _result(proc, timeout=30)  # a hang guard: it stops after the batch, not at the end
    assert result["stopped"] is True
    assert result["units"] and result["units"][-1]["status"] == "stopped"
    assert _left(engine) > total - due
    with engine.connect() as conn:
        statuses = set(conn.execute(sa.text("SELECT status FROM lethe_runs")).scalars())
        running = conn.execute(sa.text(
            "SELECT count(*) FROM lethe_leases WHERE state = 'running' "
            "AND expires_at > now()")).scalar_one()
    assert "stopped" in statuses and running == 0  # handed back at once
    after = _result(_worker(policy, "--name", "next", "--batch-size", "1000"))
    assert any(not u["takeover"] for u in after["units"])
    assert _due(engine) == 0 and _left(engine) == total - due


def test_metrics_endpoint_reports_the_work(setup: tuple[Path, sa.Engine]) -> None:
    import socket
    import urllib.request

    policy, engine = setup
    due = _due(engine)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-c", "from lethe.cli.app import main; main()", "worker",
            "--policy", str(policy), "--now", NOW_ARG, "--json", "--poll-seconds", "0.5",
            "--metrics-port", str(port), "--batch-size", "2000"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})
    try:
        _wait_for(lambda: _due(engine) == 0, timeout=120)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())

        _wait_for(lambda: f'lethe_units_done_total{{kind="schedule"}} {len(TABLES)}.0'
                  in scrape(), timeout=30)
        text = scrape()
        handled = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("lethe_rows_handled_total{"))
        assert handled == due
        assert "lethe_requests_open 0.0" in text
        assert "lethe_lease_takeovers_total 0.0" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and json.loads(out)["stopped"] is True


def test_an_occurrence_whose_step_fails_runs_once(postgres_url: str, tmp_path: Path) -> None:
    """Issue 17, item 8: one occurrence of a schedule is executed by one worker. A unit
    whose run fails (here the store's role may not delete from one table) used to be
    handed back and run again by every worker, over and over: `--once` never ended."""
    role = f"lethe_limited_{os.getpid()}"
    engine = sa.create_engine(normalize_url(postgres_url))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        for table in ("t_ok", "t_denied"):
            conn.execute(sa.text(f"CREATE TABLE {table} (id bigint PRIMARY KEY, at timestamptz)"))
            conn.execute(sa.text(f"INSERT INTO {table} SELECT g, TIMESTAMPTZ '2026-01-01' "
                                 "FROM generate_series(1, 500) g"))
            conn.execute(sa.text(f"GRANT SELECT ON {table} TO {role}"))
        conn.execute(sa.text(f"GRANT DELETE ON t_ok TO {role}"))
    app = sa.engine.make_url(normalize_url(postgres_url)).set(username=role) \
        .render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")
    datasets = "\n".join(f"  {t}: {{store: app, table: {t}, class: operational, "
                         f"retention: [{{keep: 30d, after: at}}]}}" for t in ("t_ok", "t_denied"))
    policy = tmp_path / "lethe.yaml"
    policy.write_text(POLICY.format(url=postgres_url, datasets=datasets).replace(
        f'stores: {{app: {{url: "{postgres_url}"}}}}', f'stores: {{app: {{url: "{app}"}}}}'),
        encoding="utf-8")
    try:
        procs = [_worker(policy, "--name", f"w{i}", "--poll-seconds", "0.2") for i in range(3)]
        results = [_result(p, timeout=120) for p in procs]  # --once ends
        units = [u for r in results for u in r["units"]]
        assert sorted((u["dataset"], u["status"]) for u in units) == [
            ("t_denied", "failed"), ("t_ok", "done")]
        with engine.connect() as conn:
            runs = conn.execute(sa.text("SELECT datasets, status FROM lethe_runs")).all()
            left = conn.execute(sa.text("SELECT count(*) FROM t_denied")).scalar_one()
            states = dict(conn.execute(sa.text("SELECT unit, state FROM lethe_leases")).all())
        assert sorted(runs) == [('["t_denied"]', "completed_with_errors"),
                                ('["t_ok"]', "completed")]
        assert left == 500 and set(states.values()) == {"done"}
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        engine.dispose()
