"""`lethe init` leads somewhere, and `check` never creates a database (issue 21)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.errors import StoreError
from lethe.stores.base import TRUE
from lethe.stores.sql import SqliteStore


def lethe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                           *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          stdin=subprocess.DEVNULL)


def starter_tables(path: Path) -> None:
    """The tables the starter policy declares, as an application would have them."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id integer PRIMARY KEY, email text, "
                             "closed_at timestamp, deleted_at timestamp)"))
        conn.execute(sa.text("CREATE TABLE sessions (id integer PRIMARY KEY, user_id integer "
                             "REFERENCES users (id), last_seen_at timestamp)"))
        conn.execute(sa.text("CREATE INDEX sessions_user ON sessions (user_id)"))
    engine.dispose()


def test_init_without_a_database_writes_a_placeholder_check_reports_missing(
        tmp_path: Path) -> None:
    made = lethe(tmp_path, "init")
    assert made.returncode == 0, made.stderr
    assert "next: set stores.app.url" in made.stdout and "lethe check" in made.stdout
    assert "APP_DATABASE_URL is not set" not in made.stdout + made.stderr
    checked = lethe(tmp_path, "check")
    assert checked.returncode == 2
    assert "stores.app.url" in checked.stderr and "does not exist" in checked.stderr
    assert "your-app.db" in checked.stderr
    assert not (tmp_path / "path").exists()  # no directory, no empty database file


def test_init_with_a_sqlite_path_then_check_passes(tmp_path: Path) -> None:
    starter_tables(tmp_path / "app.db")
    made = lethe(tmp_path, "init", "--database", "app.db", "--json")
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    assert data["next"][0].startswith("lethe check")
    assert str(tmp_path / "lethe.yaml") in data["created"] or "lethe.yaml" in data["created"]
    checked = lethe(tmp_path, "check", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [f for f in json.loads(checked.stdout)["findings"] if f["severity"] == "error"] == []
    planned = lethe(tmp_path, "plan", "--json")
    assert planned.returncode == 0, planned.stderr


def test_init_with_a_url_keeps_it_and_a_missing_table_is_a_finding(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id integer PRIMARY KEY)"))
    engine.dispose()
    url = f"sqlite:///{tmp_path / 'other.db'}"
    assert lethe(tmp_path, "init", "--database", url).returncode == 0
    assert f'"{url}"' in (tmp_path / "lethe.yaml").read_text()
    checked = lethe(tmp_path, "check", "--json")
    assert checked.returncode == 1  # findings: the starter's tables are not there
    codes = {f["code"] for f in json.loads(checked.stdout)["findings"]}
    assert "missing-table" in codes


def test_init_demo_says_what_to_run_next(tmp_path: Path) -> None:
    made = lethe(tmp_path, "init", "--demo")
    assert made.returncode == 0, made.stderr
    assert "next: lethe plan" in made.stdout
    assert lethe(tmp_path, "plan").returncode == 0
    both = lethe(tmp_path, "init", "--demo", "--database", "x.db", "--force")
    assert both.returncode == 2 and "--database" in both.stderr


def test_check_never_creates_a_missing_sqlite_database(tmp_path: Path) -> None:
    starter_tables(tmp_path / "app.db")
    assert lethe(tmp_path, "init", "--database", "app.db").returncode == 0
    (tmp_path / "app.db").unlink()
    for command in ("check", "plan", "run"):
        done = lethe(tmp_path, command)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.count("\n") == 1 and "does not exist" in done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "app.db").exists(), command


def test_a_sqlite_store_whose_file_goes_away_is_not_recreated(tmp_path: Path) -> None:
    """Even after opening: the engine opens the file read-write, never creating it."""
    path = tmp_path / "app.db"
    starter_tables(path)
    store = SqliteStore("app", f"sqlite:///{path}")
    assert "users" in store.tables()
    store.engine.dispose()
    path.unlink()
    with pytest.raises(StoreError):
        store.count("users", TRUE)
    store.close()
    assert not path.exists()


def test_a_sqlite_store_that_is_missing_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist") as raised:
        SqliteStore("app", f"sqlite:///{tmp_path / 'nope.db'}")
    assert raised.value.path == "stores.app.url"
    assert not (tmp_path / "nope.db").exists()
