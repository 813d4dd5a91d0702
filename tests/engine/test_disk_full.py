"""A control store whose disk fills during `lethe run` (issue 17, item 1).

The control store sits on a small tmpfs (SQLite: its file; PostgreSQL: its tables, moved
to a tablespace on the tmpfs), nearly filled before the run. The run must stop with a
one-line error, and every row it deleted must be covered by an audit entry written
before the row's batch committed; once space is back, the next run closes the
interrupted run (its step entry and `run.finished`) and finishes the job, and the log
verifies. On the code before this test, 20,000 rows went with no entry and the run
stayed `running` for good.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lethe.stores.sql import normalize_url

pytestmark = [pytest.mark.slow]

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ROWS = 20_000
BATCH = "100"

POLICY = """\
lethe: 1
organization: Disk Full
control: "{control}"
stores: {{app: {{url: "sqlite:///{app}"}}}}
datasets:
  sessions:
    store: app
    table: sessions
    class: operational
    retention: [{{keep: 30d, after: last_seen_at}}]
"""


def lethe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@contextmanager
def tmpfs(path: Path, size: str, options: str = "") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs (root needed under CI): {mounted.stderr}")
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        with suppress(OSError):
            path.rmdir()


def fill(path: Path, leave: int) -> Path:
    """Fill the file system at `path` up to `leave` free bytes."""
    filler = path / "filler"
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with filler.open("wb") as out:
        out.write(b"\0" * max(free - leave, 0))
    return filler


def make_app(app: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{app}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE sessions (id INTEGER PRIMARY KEY, "
                             "token TEXT NOT NULL, last_seen_at TIMESTAMP)"))
        old = (NOW - timedelta(days=90)).strftime("%Y-%m-%d %H:%M:%S")
        conn.execute(sa.text("INSERT INTO sessions VALUES (:i, :t, :at)"),
                     [{"i": i, "t": f"token-{i}", "at": old} for i in range(1, ROWS + 1)])
    engine.dispose()


def remaining(app: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{app}")
    with engine.connect() as conn:
        left = int(conn.execute(sa.text("SELECT count(*) FROM sessions")).scalar_one())
    engine.dispose()
    return left


def entries(control: str) -> list[tuple[str, dict[str, Any]]]:
    engine = sa.create_engine(normalize_url(control))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT action, details FROM lethe_audit ORDER BY seq"))
        found = [(r.action, json.loads(r.details)) for r in rows]
    engine.dispose()
    return found


def run_status(control: str, run: int) -> str:
    engine = sa.create_engine(normalize_url(control))
    with engine.connect() as conn:
        status = str(conn.execute(sa.text("SELECT status FROM lethe_runs WHERE id = :i"),
                                  {"i": run}).scalar_one())
    engine.dispose()
    return status


def disk_full_run(work: Path, control: str, space: Path, leave: int,
                  before_fill: Any = None) -> None:
    app = work / "app.db"
    make_app(app)
    (work / "lethe.yaml").write_text(POLICY.format(control=control, app=app))
    # a first run with nothing due yet: the control store's tables and the key exist
    warm = lethe(work, "run", "--now", (NOW - timedelta(days=365)).isoformat())
    assert warm.returncode == 0, warm.stderr
    if before_fill is not None:
        before_fill()
    filler = fill(space, leave)

    failed = lethe(work, "run", "--batch-size", BATCH, "--now", NOW.isoformat())
    assert failed.returncode == 2, (failed.stdout, failed.stderr)
    assert "Traceback" not in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    deleted = ROWS - remaining(app)
    assert 0 < deleted < ROWS, f"the disk must fill mid-run: {deleted} deleted; {failed.stderr}"

    # Before any recovery: the audit log covers every deleted row.
    batches = [d for a, d in entries(control) if a == "retention.batch" and d["run"] == 2]
    assert sum(d["rows"] for d in batches) == deleted
    assert run_status(control, 2) == "running"

    filler.unlink()
    again = lethe(work, "run", "--batch-size", BATCH, "--now", NOW.isoformat())
    assert again.returncode == 0, again.stderr
    assert remaining(app) == 0
    assert run_status(control, 2) == "interrupted"
    log = entries(control)
    steps = {d["run"]: d for a, d in log if a == "retention.delete"}
    assert steps[2]["done"] == deleted and steps[2]["verified"] is False
    assert "interrupted" in steps[2]["error"]
    assert steps[3]["done"] == ROWS - deleted
    finished = {d["run"]: d for a, d in log if a == "run.finished"}
    assert finished[2]["status"] == "interrupted" and finished[2]["rows"] == deleted
    verify = lethe(work, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_sqlite_control_store_disk_full(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "control", "16m") as space:
        disk_full_run(tmp_path, f"sqlite:///{space / 'state.db'}", space, leave=256 * 1024)


@pytest.mark.postgres
def test_postgres_control_store_disk_full(tmp_path: Path, postgres_server: str) -> None:
    admin = sa.create_engine(normalize_url(postgres_server), isolation_level="AUTOCOMMIT")
    name = f"lethe_full_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        data_dir = str(conn.execute(sa.text("SHOW data_directory")).scalar_one())
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    owner = os.stat(data_dir)
    url = sa.engine.make_url(normalize_url(postgres_server)).set(database=name)
    control = url.render_as_string(hide_password=False)
    try:
        # outside tmp_path: the server's user must be able to reach the directory
        with tmpfs(Path(tempfile.gettempdir()) / f"lethe-ts-{uuid.uuid4().hex[:8]}", "4m",
                   f",uid={owner.st_uid},gid={owner.st_gid},mode=0700") as space:
            (space / "pg").mkdir()
            os.chown(space / "pg", owner.st_uid, owner.st_gid)
            with admin.connect() as conn:
                conn.execute(sa.text(f"CREATE TABLESPACE \"{name}\" LOCATION '{space / 'pg'}'"))

            def move_control_store() -> None:
                engine = sa.create_engine(normalize_url(control), isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    conn.execute(sa.text(f'ALTER TABLE ALL IN TABLESPACE pg_default '
                                         f'SET TABLESPACE "{name}"'))
                    conn.execute(sa.text(f'ALTER INDEX ALL IN TABLESPACE pg_default '
                                         f'SET TABLESPACE "{name}"'))
                engine.dispose()

            try:
                disk_full_run(tmp_path, control, space, leave=16 * 1024,
                              before_fill=move_control_store)
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    with suppress(sa.exc.DBAPIError):
                        conn.execute(sa.text(f'DROP TABLESPACE IF EXISTS "{name}"'))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
