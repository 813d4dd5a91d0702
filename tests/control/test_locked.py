"""A SQLite control store another process keeps write-locked (issue 17, item 9).

`hold place` used to wait 31 s and then blame "migrating the control store": opening
an up-to-date store took the write lock to check its migrations. Now opening only reads,
the failure names what was being written and that another process holds the lock, and
reads go on meanwhile (WAL).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.fixtures import build_app, write_policy


def lethe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LETHE_SQLITE_BUSY_TIMEOUT": "0.5"}
    return subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=env)


def test_a_locked_control_store_fails_where_it_is_written_and_says_why(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_app(url).dispose()
    write_policy(tmp_path, url)
    first = lethe(tmp_path, "hold", "place", "--dataset", "sessions", "--reason", "case 1")
    assert first.returncode == 0, first.stderr  # the store exists and is migrated

    locker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        listed = lethe(tmp_path, "hold", "list")
        assert listed.returncode == 0, listed.stderr  # reading is not blocked
        assert "case 1" in listed.stdout
        placed = lethe(tmp_path, "hold", "place", "--dataset", "sessions", "--reason", "case 2")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert placed.returncode == 2, placed.stdout
    assert "Traceback" not in placed.stderr
    assert len(placed.stderr.strip().splitlines()) == 1
    assert "migrating" not in placed.stderr
    assert "placing a hold" in placed.stderr and "locked by another process" in placed.stderr
