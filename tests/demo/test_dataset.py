"""The demo database must give a retention run real work and real survivors, every time."""

from __future__ import annotations

import calendar
import hashlib
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from lethe.demo.dataset import build_demo_database

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
START = NOW.replace(year=NOW.year - 3)
TABLES = (
    "workspaces", "users", "sessions", "login_history", "failed_logins",
    "password_reset_tokens", "oauth_states", "access_tokens", "webhook_events", "app_logs",
    "error_logs", "audit_logs", "metrics", "analytics_events", "invoices",
)
_FIXED = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
          "w": timedelta(weeks=1)}


def cutoff(duration: str, now: datetime) -> datetime:
    """Kept independent of lethe.policy on purpose: the demo is checked against the spec."""
    match = re.fullmatch(r"(\d+)(mo|m|h|d|w|y)", duration)
    assert match, duration
    amount, unit = int(match.group(1)), match.group(2)
    if unit in _FIXED:
        return now - amount * _FIXED[unit]
    months = amount * (12 if unit == "y" else 1)
    year, month = divmod(now.year * 12 + now.month - 1 - months, 12)
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    return now.replace(year=year, month=month + 1, day=day)


def fmt(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d %H:%M:%S")


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with sqlite3.connect(path) as conn:
        for table in TABLES:
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY id"):
                digest.update(repr(row).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    data = yaml.safe_load(files("lethe.demo").joinpath("policy.yaml").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("demo") / "app.db"
    return path, build_demo_database(path, NOW)


@pytest.fixture()
def db(built: tuple[Path, dict[str, int]]) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(built[0])
    yield conn
    conn.close()


def test_every_table_has_rows_and_counts_match(
        built: tuple[Path, dict[str, int]], db: sqlite3.Connection) -> None:
    counts = built[1]
    assert set(counts) == set(TABLES)
    for table in TABLES:
        assert counts[table] > 0, table
        assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == counts[table]
    assert 60_000 <= sum(counts.values()) <= 80_000


def test_same_seed_gives_the_same_database(tmp_path: Path,
                                           built: tuple[Path, dict[str, int]]) -> None:
    again = build_demo_database(tmp_path / "again.db", NOW)
    assert again == built[1]
    assert content_hash(tmp_path / "again.db") == content_hash(built[0])


def test_another_seed_gives_another_database(tmp_path: Path,
                                             built: tuple[Path, dict[str, int]]) -> None:
    build_demo_database(tmp_path / "other.db", NOW, seed=8)
    assert content_hash(tmp_path / "other.db") != content_hash(built[0])


def test_building_again_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    first = build_demo_database(path, NOW, scale=0.05)
    assert build_demo_database(path, NOW, scale=0.05) == first
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == first["users"]


def test_scale_shrinks_the_database(tmp_path: Path,
                                    built: tuple[Path, dict[str, int]]) -> None:
    small = build_demo_database(tmp_path / "small.db", NOW, scale=0.1)
    assert all(n > 0 for n in small.values())
    assert sum(small.values()) < sum(built[1].values()) / 5


def test_no_row_leaks_out_of_a_workspace(db: sqlite3.Connection) -> None:
    known = {row[0] for row in db.execute("SELECT id FROM workspaces")}
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if "workspace_id" not in columns:
            continue
        values = {row[0] for row in db.execute(f"SELECT DISTINCT workspace_id FROM {table}")}
        assert values <= known | {"__org__"}, table


def test_foreign_keys_resolve(db: sqlite3.Connection) -> None:
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_timestamps_are_utc_text_within_the_three_years(db: sqlite3.Connection) -> None:
    pattern = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
    for table in TABLES:
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")
                   if row[1].endswith("_at")]
        for column in columns:
            lo, hi = db.execute(f"SELECT MIN({column}), MAX({column}) FROM {table}").fetchone()
            if lo is None:
                continue
            assert pattern.match(lo) and pattern.match(hi), (table, column)
            assert lo >= fmt(START), (table, column)
            if column not in ("expires_at",):
                assert hi <= fmt(NOW), (table, column)


def test_audit_logs_span_the_full_three_years(db: sqlite3.Connection) -> None:
    lo, hi = db.execute("SELECT MIN(created_at), MAX(created_at) FROM audit_logs").fetchone()
    assert lo < fmt(START + timedelta(days=30))
    assert hi > fmt(NOW - timedelta(days=1))


def test_emails_are_fake_and_unique(db: sqlite3.Connection) -> None:
    emails = [row[0] for row in db.execute("SELECT email FROM users")]
    assert len(set(emails)) == len(emails)
    assert all(e.split("@")[1] in {"example.com", "example.org", "example.net"} for e in emails)


def test_most_accounts_are_open(db: sqlite3.Connection) -> None:
    open_share = db.execute("SELECT AVG(closed_at IS NULL) FROM users").fetchone()[0]
    assert 0.8 <= open_share <= 0.9
    # soft-deleted accounts are closed ones, soft-deleted 90 days after closing
    assert db.execute("SELECT COUNT(*) FROM users WHERE deleted_at IS NOT NULL").fetchone()[0] > 0
    assert db.execute("SELECT COUNT(*) FROM users WHERE deleted_at IS NOT NULL AND "
                      "(closed_at IS NULL OR julianday(deleted_at) - julianday(closed_at) "
                      "NOT BETWEEN 89.99 AND 90.01)").fetchone()[0] == 0


def test_every_table_is_declared_and_indexed(policy: dict[str, Any],
                                             db: sqlite3.Connection) -> None:
    datasets = {name: ds for name, ds in policy["datasets"].items() if "table" in ds}
    assert {ds["table"] for ds in datasets.values()} == set(TABLES)
    for ds in datasets.values():
        table = ds["table"]
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        indexed = {row[2] for ix in db.execute(f"PRAGMA index_list({table})")
                   for row in db.execute(f"PRAGMA index_info({ix[1]})")}
        wanted = {c for c in columns if c.endswith("_id")} | {r["after"] for r in
                                                              ds.get("retention", [])}
        assert not wanted - indexed, (table, wanted - indexed)
        named = {*ds.get("fields", {}), *ds.get("belongs_to", {}).values(),
                 *(r["after"] for r in ds.get("retention", [])),
                 *(c for r in ds.get("retention", []) for c in r.get("when", {}))}
        if "workspace_id" in columns:
            assert ds.get("workspace") == "workspace_id", table
        assert named <= columns, (table, named - columns)


def _rules(policy: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    for name, ds in policy["datasets"].items():
        if "table" not in ds:
            continue  # the object store's exports
        for rule in ds.get("retention", []):
            yield name, ds["table"], rule["keep"], rule


@pytest.mark.parametrize("dataset", ["users", "sessions", "login_history", "failed_logins",
                                     "password_reset_tokens", "oauth_states", "access_tokens",
                                     "webhook_events", "app_logs", "error_logs", "audit_logs",
                                     "metrics", "analytics_events", "invoices"])
def test_retention_has_work_and_survivors(dataset: str, policy: dict[str, Any],
                                          db: sqlite3.Connection) -> None:
    rules = [r for r in _rules(policy) if r[0] == dataset]
    assert rules
    for _, table, keep, rule in rules:
        where, params = ["1 = 1"], []
        for column, value in rule.get("when", {}).items():
            values = value if isinstance(value, list) else [value]
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        limit = fmt(cutoff(keep, NOW))
        after = rule["after"]
        total, old = db.execute(
            f"SELECT COUNT(*), SUM({after} < ?) FROM {table} WHERE {' AND '.join(where)}",
            [limit, *params]).fetchone()
        young = total - old
        if limit < fmt(START):
            # 7-year rules outlive the 3-year history: everything survives, nothing is due.
            assert old == 0 and young == total > 0, (table, rule)
            continue
        assert old >= max(1, total // 100), (table, rule, old, total)
        assert young >= max(1, total // 100), (table, rule, young, total)
