"""Adversarial checks: policies and schemas lethe has never seen, on real SQLite and PostgreSQL.

Each test states what a privacy engineer expects from SPEC.md and docs/ (semantics, cli,
policy). A test that documents a defect asserts the *correct* behaviour and is marked
`xfail(strict=True, reason="BUG: ...")`, so the suite stays green while the bug is recorded
and the marker must be removed once the bug is fixed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lethe import Clock, Runtime, build_plan, execute, load_policy
from lethe.engine.execute import RunResult
from lethe.stores.sql import normalize_url

NOW = datetime(2026, 6, 1, tzinfo=UTC)
NOW_ARG = "2026-06-01T00:00:00Z"
CUTOFF_30D = NOW - timedelta(days=30)  # 2026-05-02T00:00:00Z
CUTOFF_EPOCH = int(CUTOFF_30D.timestamp())  # 1777680000


# -- helpers ------------------------------------------------------------------------------
def backend_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return str(request.getfixturevalue("postgres_url"))


def is_pg(url: str) -> bool:
    return url.startswith("postgres")


def sql(url: str, *statements: str | tuple[str, Any]) -> None:
    """Run raw DDL/DML the way an unknown application would have created its data."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            for statement in statements:
                if isinstance(statement, tuple):
                    conn.execute(sa.text(statement[0]), statement[1])
                else:
                    conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(query)]
    finally:
        engine.dispose()


def key_set(url: str, query: str) -> set[Any]:
    return {r[0] for r in rows(url, query)}


def write_policy(tmp_path: Path, url: str, datasets: dict[str, Any],
                 subjects: dict[str, Any] | None = None, **extra: Any) -> Path:
    policy: dict[str, Any] = {"lethe": 1, "organization": "Adversarial Co",
                              "control": "sqlite:///state.db",
                              "stores": {"app": {"url": url}},
                              "subjects": subjects or {}, "datasets": datasets, **extra}
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return path


def run_api(policy: Path, now: datetime = NOW, *, batch_size: int = 10_000,
            datasets: Sequence[str] | None = None) -> RunResult:
    rt = Runtime.open(load_policy(policy), Clock(now))
    try:
        return execute(rt, build_plan(rt, datasets), batch_size=batch_size)
    finally:
        rt.close()


def plan_api(policy: Path, now: datetime = NOW) -> dict[str, Any]:
    rt = Runtime.open(load_policy(policy), Clock(now))
    try:
        return build_plan(rt).as_dict()
    finally:
        rt.close()


def lethe(*args: str, cwd: Path, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "LETHE_DEBUG"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                           *args], capture_output=True, text=True, cwd=cwd, env=environ,
                          timeout=120)


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int,
                         *mentions: str, secrets: Sequence[str] = ()) -> None:
    """Exit code, one line on stderr, no traceback, no internal error, no row values."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out, out
    assert "internal error" not in out, out
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lethe: error: "), proc.stderr
    for text in mentions:
        assert text in lines[0], lines[0]
    for secret in secrets:
        assert secret not in out, f"row value {secret!r} leaked: {out}"


def steps(plan: dict[str, Any]) -> dict[tuple[str, Any, str], dict[str, Any]]:
    return {(a["dataset"], a["rule"], a["action"]): a for a in plan["actions"]}


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def simple_dataset(table: str, after: str, keep: str = "30d", **more: Any) -> dict[str, Any]:
    return {"store": "app", "table": table, "class": "operational",
            "retention": [{"keep": keep, "after": after}], **more}


# -- time: SQLite spellings ----------------------------------------------------------------
def test_sqlite_times_compare_by_instant_in_every_usual_spelling(sqlite_url: str,
                                                                 tmp_path: Path) -> None:
    """docs/semantics.md: SQLite ISO-8601 text in any usual spelling, with or without offset,
    or epoch seconds/milliseconds; comparison by instant; NULL and garbage are kept."""
    old, new = NOW - timedelta(days=61), NOW - timedelta(days=12)
    values: dict[int, tuple[Any, bool]] = {
        1: (old.strftime("%Y-%m-%dT%H:%M:%SZ"), True),
        2: (new.strftime("%Y-%m-%dT%H:%M:%SZ"), False),
        3: ("2026-05-02T01:00:00+02:00", True),   # 2026-05-01T23:00Z: older, text says newer
        4: ("2026-05-01T23:30:00-02:00", False),  # 2026-05-02T01:30Z: newer, text says older
        5: ("2026-04-30", True),
        6: ("2026-05-03", False),
        7: (int(old.timestamp()), True),
        8: (int(new.timestamp()), False),
        9: (int(old.timestamp()) * 1000, True),
        10: (int(new.timestamp()) * 1000, False),
        11: ("2026-05-01 12:00:00", True),
        12: ("2026-05-01T12:00:00.123456Z", True),
        13: (CUTOFF_EPOCH, False),                # exactly at the cutoff: kept
        14: (CUTOFF_EPOCH * 1000, False),
        15: ("2026-05-02T00:00:00Z", False),
        16: ("2026-05-02", False),
        17: ("2026-05-02T02:00:00+02:00", False),
        18: (None, False),
        19: ("not a date", False),
        20: (old.timestamp() + 0.5, True),        # REAL epoch seconds
        21: ("2026-05-01T23:59:59.999Z", True),
        22: ("2026-05-02T00:00:00.001Z", False),
    }
    sql(sqlite_url, "CREATE TABLE ev (id INTEGER PRIMARY KEY, at)",
        ("INSERT INTO ev (id, at) VALUES (:id, :at)",
         [{"id": k, "at": v} for k, (v, _) in values.items()]))
    policy = write_policy(tmp_path, sqlite_url, {"ev": simple_dataset("ev", "at")})
    due = {k for k, (_, d) in values.items() if d}
    assert steps(plan_api(policy))[("ev", 0, "delete")]["rows"] == len(due)
    result = run_api(policy)
    assert result.ok, result.as_dict()
    assert key_set(sqlite_url, "SELECT id FROM ev") == set(values) - due


def test_sqlite_offset_without_colon_is_an_iso_spelling(sqlite_url: str,
                                                        tmp_path: Path) -> None:
    sql(sqlite_url, "CREATE TABLE ev (id INTEGER PRIMARY KEY, at TEXT)",
        "INSERT INTO ev VALUES (1, '2020-01-01T00:00:00+0000'), "
        "(2, '2020-01-01T00:00:00+0200'), (3, '2026-05-31T00:00:00+0000')")
    policy = write_policy(tmp_path, sqlite_url, {"ev": simple_dataset("ev", "at")})
    run_api(policy)
    assert key_set(sqlite_url, "SELECT id FROM ev") == {3}


# A `now` whose 30-day cutoff (2026-05-13T03:31:50Z) is not representable exactly as a
# Julian day: Python's epoch/86400 + 2440587.5 rounds above SQLite's julianday(text).
ODD_NOW = datetime(2026, 6, 12, 3, 31, 50, tzinfo=UTC)


@pytest.mark.parametrize("backend", [
    "sqlite",
    "postgres"])
def test_row_exactly_at_the_cutoff_is_kept(backend: str, request: pytest.FixtureRequest,
                                           tmp_path: Path) -> None:
    """docs/semantics.md: due means *older* than keep before now; at the cutoff is kept."""
    url = backend_url(request, backend, tmp_path)
    cutoff = ODD_NOW - timedelta(days=30)
    column = "TIMESTAMPTZ" if is_pg(url) else "TEXT"
    sql(url, f"CREATE TABLE ev (id INTEGER PRIMARY KEY, at {column})",
        ("INSERT INTO ev (id, at) VALUES (:id, :at)", [
            {"id": 1, "at": iso(cutoff)},
            {"id": 2, "at": iso(cutoff - timedelta(seconds=1))},
            {"id": 3, "at": iso(cutoff + timedelta(seconds=1))}]))
    policy = write_policy(tmp_path, url, {"ev": simple_dataset("ev", "at")})
    result = run_api(policy, ODD_NOW)
    assert result.ok
    assert key_set(url, "SELECT id FROM ev") == {1, 3}


# -- time: PostgreSQL column types ---------------------------------------------------------
def test_postgres_time_types_under_a_non_utc_session_zone(postgres_url: str,
                                                          tmp_path: Path) -> None:
    """timestamptz, timestamp (read as UTC), date and epoch-second integers; the server's
    TimeZone setting (+05:30 here) must not shift anything; exact cutoff is kept."""
    database = sa.engine.make_url(normalize_url(postgres_url)).database
    sql(postgres_url, f"ALTER DATABASE \"{database}\" SET timezone TO 'Asia/Kolkata'")
    tables = {
        "t_tstz": ("TIMESTAMPTZ", ["2026-05-02T05:29:59+05:30", "2026-05-02T00:00:00Z",
                                   "2026-05-02T05:30:01+05:30"]),
        "t_naive": ("TIMESTAMP", ["2026-05-01 23:59:59", "2026-05-02 00:00:00",
                                  "2026-05-02 00:00:01"]),
        "t_date": ("DATE", ["2026-05-01", "2026-05-02", "2026-05-03"]),
        "t_bigint": ("BIGINT", [CUTOFF_EPOCH - 1, CUTOFF_EPOCH, CUTOFF_EPOCH + 1]),
        "t_int": ("INTEGER", [CUTOFF_EPOCH - 86400, CUTOFF_EPOCH, CUTOFF_EPOCH + 86400]),
        "t_double": ("DOUBLE PRECISION", [CUTOFF_EPOCH - 0.5, CUTOFF_EPOCH + 0.0,
                                          CUTOFF_EPOCH + 0.5]),
    }
    statements: list[str | tuple[str, Any]] = []
    for table, (ctype, (older, exact, newer)) in tables.items():
        statements.append(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, at {ctype})")
        cast = "" if ctype in {"BIGINT", "INTEGER", "DOUBLE PRECISION"} else f"::{ctype}"
        statements.append((f"INSERT INTO {table} VALUES (1, CAST(:a AS TEXT){cast}), "
                           f"(2, CAST(:b AS TEXT){cast}), (3, CAST(:c AS TEXT){cast}), "
                           f"(4, NULL)" if cast else
                           f"INSERT INTO {table} VALUES (1, :a), (2, :b), (3, :c), (4, NULL)",
                           {"a": older, "b": exact, "c": newer}))
    sql(postgres_url, *statements)
    policy = write_policy(tmp_path, postgres_url,
                          {t: simple_dataset(t, "at") for t in tables})
    now = datetime.fromisoformat("2026-06-01T05:30:00+05:30")  # == NOW, given with an offset
    result = run_api(policy, now)
    assert result.ok, result.as_dict()
    for table in tables:
        assert key_set(postgres_url, f"SELECT id FROM {table}") == {2, 3, 4}, table


# -- names ---------------------------------------------------------------------------------
def test_reserved_and_mixed_case_names(app_url: str, tmp_path: Path) -> None:
    """Names are taken from the live schema and quoted: "Order", user, group, a column select."""
    pg = is_pg(app_url)
    ts = "TIMESTAMPTZ" if pg else "TIMESTAMP"
    sql(app_url,
        f'CREATE TABLE "user" (id INTEGER PRIMARY KEY, "select" TEXT, "group" TEXT, '
        f'"ClosedAt" {ts})',
        f'CREATE TABLE "Order" ("Id" INTEGER PRIMARY KEY, "UserId" INTEGER, "PlacedAt" {ts})',
        f'CREATE TABLE "group" (id INTEGER PRIMARY KEY, "from" {ts}, "order" TEXT)',
        'CREATE INDEX ix_order_user ON "Order" ("UserId")',
        ("INSERT INTO \"user\" VALUES (1, 'x', 'a', :old), (2, 'y', 'b', :old), "
         "(3, 'x', 'c', NULL)", {"old": iso(NOW - timedelta(days=400))}),
        ('INSERT INTO "Order" VALUES (10, 1, :new), (11, 2, :new), (12, 3, :old), '
         '(13, NULL, :new)',
         {"new": iso(NOW - timedelta(days=1)), "old": iso(NOW - timedelta(days=100))}),
        ("INSERT INTO \"group\" VALUES (1, :old, 'asc'), (2, :new, 'desc')",
         {"new": iso(NOW - timedelta(days=1)), "old": iso(NOW - timedelta(days=100))}))
    policy = write_policy(tmp_path, app_url, {
        "accounts": {"store": "app", "table": "user", "class": "pii",
                     "fields": {"group": {"class": "pii", "anonymize": "redact"}},
                     "retention": [{"when": {"select": "x"}, "keep": "90d",
                                    "after": "ClosedAt"},
                                   {"keep": "forever", "after": "ClosedAt"}]},
        "orders": {"store": "app", "table": "Order", "key": "Id", "class": "operational",
                   "belongs_to": {"accounts": "UserId"},
                   "retention": [{"keep": "30d", "after": "PlacedAt"}]},
        "groups": {"store": "app", "table": "group", "class": "operational",
                   "retention": [{"when": {"order": "asc"}, "keep": "30d", "after": "from"}]},
    })
    check = lethe("check", "--policy", str(policy), "--json", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    result = run_api(policy)
    assert result.ok, result.as_dict()
    assert key_set(app_url, 'SELECT id FROM "user"') == {2, 3}
    assert key_set(app_url, 'SELECT "Id" FROM "Order"') == {11, 13}  # 10 cascaded, 12 old
    assert key_set(app_url, 'SELECT id FROM "group"') == {2}


# -- when ----------------------------------------------------------------------------------
def test_when_on_integer_boolean_null_and_wrong_types(app_url: str, tmp_path: Path) -> None:
    """First matching rule wins; equality, IN, NULL; a value that cannot be of the column's
    type matches nothing (no error); a rule without `when` takes the rest."""
    ts = "TIMESTAMPTZ" if is_pg(app_url) else "TIMESTAMP"
    sql(app_url, f"CREATE TABLE tickets (id INTEGER PRIMARY KEY, prio INTEGER, "
                 f"urgent BOOLEAN, status TEXT, at {ts})")
    old, young = NOW - timedelta(days=50), NOW - timedelta(days=5)
    data = [  # id, prio, urgent, status, at
        (1, 1, None, None, old),          # rule 0 (prio 1, 10d): due
        (2, 2, True, None, old),          # rule 1 (urgent true, 20d): due
        (3, 2, False, "closed", old),     # rule 2 (status closed|null, 30d): due
        (4, 2, False, None, old),         # rule 2 via null: due
        (5, 2, None, "open", old),        # rule 5 (rest, 365d): kept
        (6, None, None, "5", old),        # rule 4 (status: 5 as text, 40d): due
        (7, None, None, "open", old),     # rule 5: kept
        (8, 1, True, "closed", young),    # rule 0 claims it; young: kept
        (9, 3, False, "closed", NOW - timedelta(days=20)),  # rule 2, 20d < 30d: kept
    ]
    engine = sa.create_engine(normalize_url(app_url))
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tickets VALUES (:i, :p, :u, :s, :a)"),
                     [{"i": i, "p": p, "u": u, "s": s, "a": a} for i, p, u, s, a in data])
    engine.dispose()
    policy = write_policy(tmp_path, app_url, {"tickets": {
        "store": "app", "table": "tickets", "class": "operational", "retention": [
            {"when": {"prio": 1}, "keep": "10d", "after": "at"},
            {"when": {"urgent": True}, "keep": "20d", "after": "at"},
            {"when": {"status": ["closed", None]}, "keep": "30d", "after": "at"},
            {"when": {"prio": "high"}, "keep": "1d", "after": "at"},  # wrong type
            {"when": {"status": 5}, "keep": "40d", "after": "at"},
            {"keep": "365d", "after": "at"}]}})
    counts = {k[1]: v["rows"] for k, v in steps(plan_api(policy)).items()}
    assert counts == {0: 1, 1: 1, 2: 2, 3: 0, 4: 1, 5: 0}
    result = run_api(policy)
    assert result.ok, result.as_dict()
    assert key_set(app_url, "SELECT id FROM tickets") == {5, 7, 8, 9}


def test_when_boolean_given_as_integer_and_text(app_url: str, tmp_path: Path) -> None:
    sql(app_url, "CREATE TABLE flags (id INTEGER PRIMARY KEY, gone BOOLEAN, at INTEGER)",
        ("INSERT INTO flags VALUES (1, :t, :a), (2, :f, :a), (3, NULL, :a)",
         {"t": True, "f": False, "a": CUTOFF_EPOCH - 10}))
    policy = write_policy(tmp_path, app_url, {"flags": {
        "store": "app", "table": "flags", "class": "operational", "retention": [
            {"when": {"gone": 1}, "keep": "30d", "after": "at"},
            {"when": {"gone": "false"}, "keep": "forever", "after": "at"},
            {"when": {"gone": "maybe"}, "keep": "1d", "after": "at"}]}})
    assert run_api(policy).ok
    assert key_set(app_url, "SELECT id FROM flags") == {2, 3}


def test_when_unquoted_yaml_words_match_their_text(sqlite_url: str, tmp_path: Path) -> None:
    sql(sqlite_url, "CREATE TABLE visits (id INTEGER PRIMARY KEY, country TEXT, at INTEGER)",
        ("INSERT INTO visits VALUES (1, 'NO', :a), (2, 'SE', :a)", {"a": CUTOFF_EPOCH - 10}))
    (tmp_path / "lethe.yaml").write_text(f"""\
lethe: 1
organization: Adversarial Co
control: sqlite:///state.db
stores: {{app: {{url: "{sqlite_url}"}}}}
datasets:
  visits:
    store: app
    table: visits
    class: behavioral
    retention:
      - {{when: {{country: NO}}, keep: 30d, after: at}}
""", encoding="utf-8")
    run_api(tmp_path / "lethe.yaml")
    assert key_set(sqlite_url, "SELECT id FROM visits") == {2}


def test_when_value_outside_a_postgres_enum_matches_nothing(postgres_url: str,
                                                            tmp_path: Path) -> None:
    sql(postgres_url, "CREATE TYPE ticket_state AS ENUM ('open', 'closed')",
        "CREATE TABLE tickets (id INTEGER PRIMARY KEY, state ticket_state, at TIMESTAMPTZ)",
        ("INSERT INTO tickets VALUES (1, 'open', :a), (2, 'closed', :a)",
         {"a": NOW - timedelta(days=60)}))
    policy = write_policy(tmp_path, postgres_url, {"tickets": {
        "store": "app", "table": "tickets", "class": "operational", "retention": [
            {"when": {"state": "archived"}, "keep": "1d", "after": "at"},
            {"when": {"state": "closed"}, "keep": "30d", "after": "at"}]}})
    result = run_api(policy)
    assert result.ok, result.as_dict()
    assert key_set(postgres_url, "SELECT id FROM tickets") == {1}


def test_when_text_on_a_sqlite_date_column_does_not_abort(sqlite_url: str,
                                                          tmp_path: Path) -> None:
    sql(sqlite_url, "CREATE TABLE days (id INTEGER PRIMARY KEY, day DATE, at INTEGER)",
        ("INSERT INTO days VALUES (1, '2020-01-01', :a), (2, '2021-01-01', :a)",
         {"a": CUTOFF_EPOCH - 10}))
    policy = write_policy(tmp_path, sqlite_url, {"days": {
        "store": "app", "table": "days", "class": "operational", "retention": [
            {"when": {"day": "2020-01-01"}, "keep": "30d", "after": "at"}]}})
    result = run_api(policy)
    assert result.ok, result.as_dict()
    assert key_set(sqlite_url, "SELECT id FROM days") == {2}


# -- keys ----------------------------------------------------------------------------------
def test_table_without_a_primary_key_is_a_clean_error(app_url: str, tmp_path: Path) -> None:
    """Exit 2, one line naming the dataset path, no traceback, and nothing deleted anywhere."""
    sql(app_url, "CREATE TABLE lines (order_id INTEGER, line_no INTEGER, at INTEGER)",
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, at INTEGER)",
        ("INSERT INTO lines VALUES (1, 1, :a), (1, 2, :a)", {"a": CUTOFF_EPOCH - 10}),
        ("INSERT INTO ev VALUES (1, :a), (2, :a)", {"a": CUTOFF_EPOCH - 10}))
    policy = write_policy(tmp_path, app_url, {"ev": simple_dataset("ev", "at"),
                                              "lines": simple_dataset("lines", "at")})
    proc = lethe("run", "--policy", str(policy), "--now", NOW_ARG, cwd=tmp_path)
    assert_clean_failure(proc, 2, "datasets.lines")
    assert key_set(app_url, "SELECT id FROM ev") == {1, 2}
    assert len(rows(app_url, "SELECT * FROM lines")) == 2


def test_a_composite_primary_key_is_walked_as_it_is(app_url: str, tmp_path: Path) -> None:
    """Issue 18, item 7: a composite primary key is the key (no `key:` needed): the due
    lines go, in batches of one, and the run verifies."""
    sql(app_url, "CREATE TABLE lines (order_id INTEGER, line_no INTEGER, at INTEGER, "
                 "PRIMARY KEY (order_id, line_no))",
        ("INSERT INTO lines VALUES (1, 1, :a), (1, 2, :a), (1, 3, :b)",
         {"a": CUTOFF_EPOCH - 10, "b": CUTOFF_EPOCH + 10}))
    policy = write_policy(tmp_path, app_url, {"lines": simple_dataset("lines", "at")})
    result = run_api(policy, batch_size=1)
    assert result.ok, result.as_dict()
    assert rows(app_url, "SELECT order_id, line_no FROM lines") == [(1, 3)]


def test_explicit_non_unique_key_with_batch_size_one(app_url: str, tmp_path: Path) -> None:
    """`key:` names a column of a composite primary key: every due row goes, batches of 1."""
    sql(app_url, "CREATE TABLE lines (order_id INTEGER, line_no INTEGER, at INTEGER, "
                 "PRIMARY KEY (order_id, line_no))",
        ("INSERT INTO lines VALUES (:o, :l, :a)",
         [{"o": o, "l": ln, "a": CUTOFF_EPOCH - 10 if (o + ln) % 2 else CUTOFF_EPOCH + 10}
          for o in (1, 2, 3, 50, 900) for ln in (1, 2, 3)]))
    policy = write_policy(tmp_path, app_url, {
        "lines": simple_dataset("lines", "at", key="order_id")})
    result = run_api(policy, batch_size=1)
    assert result.ok, result.as_dict()
    left = set(rows(app_url, "SELECT order_id, line_no FROM lines"))
    assert left == {(o, ln) for o in (1, 2, 3, 50, 900) for ln in (1, 2, 3) if (o + ln) % 2 == 0}


@pytest.mark.parametrize("batch_size", [1, 3, 10**12])
def test_batch_sizes_agree_on_dense_and_sparse_keys(app_url: str, tmp_path: Path,
                                                    batch_size: int) -> None:
    dense = [(i, CUTOFF_EPOCH - 10 if i % 3 else CUTOFF_EPOCH + 10) for i in range(1, 41)]
    sparse = [(i * 7919 + 10**9, CUTOFF_EPOCH - 10 if i % 2 else None) for i in range(1, 41)]
    sql(app_url, "CREATE TABLE dense (id BIGINT PRIMARY KEY, at BIGINT)",
        "CREATE TABLE sparse (id BIGINT PRIMARY KEY, at BIGINT)",
        ("INSERT INTO dense VALUES (:i, :a)", [{"i": i, "a": a} for i, a in dense]),
        ("INSERT INTO sparse VALUES (:i, :a)", [{"i": i, "a": a} for i, a in sparse]))
    if is_pg(app_url):  # planner statistics switch PostgreSQL to key ranges on dense keys
        sql(app_url, "ANALYZE dense", "ANALYZE sparse")
    policy = write_policy(tmp_path, app_url, {"dense": simple_dataset("dense", "at"),
                                              "sparse": simple_dataset("sparse", "at")})
    result = run_api(policy, batch_size=batch_size)
    assert result.ok, result.as_dict()
    assert key_set(app_url, "SELECT id FROM dense") == {i for i, a in dense if a > CUTOFF_EPOCH}
    assert key_set(app_url, "SELECT id FROM sparse") == {i for i, a in sparse if a is None}
    again = run_api(policy, batch_size=batch_size)  # idempotent
    assert again.ok and sum(a.done for a in again.actions) == 0


# -- the data graph ------------------------------------------------------------------------
def users_ddl(url: str) -> list[str | tuple[str, Any]]:
    ts = "TIMESTAMPTZ" if is_pg(url) else "TIMESTAMP"
    return [f"CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, deleted_at {ts}, "
            f"closed_at {ts})",
            ("INSERT INTO users VALUES (1, 'ada@example.com', :gone, NULL), "
             "(2, 'bob@example.com', NULL, NULL), (3, 'cy@example.com', :recent, NULL)",
             {"gone": iso(NOW - timedelta(days=40)), "recent": iso(NOW - timedelta(days=5))})]


USERS = {"store": "app", "table": "users", "class": "pii",
         "fields": {"email": {"class": "pii", "anonymize": "mask-email"}},
         "soft_delete": {"column": "deleted_at", "recover_for": "30d"}}


def test_three_level_chain_cascades_to_grandchildren(app_url: str, tmp_path: Path) -> None:
    sql(app_url, *users_ddl(app_url),
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER, at INTEGER)",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, order_id INTEGER, at INTEGER)",
        ("INSERT INTO orders VALUES (10, 1, :n), (11, 1, :n), (20, 2, :n), (30, 3, :n)",
         {"n": CUTOFF_EPOCH + 10}),
        ("INSERT INTO items VALUES (100, 10, :n), (101, 10, :n), (110, 11, :n), "
         "(200, 20, :n), (300, 30, :n), (999, NULL, :n)", {"n": CUTOFF_EPOCH + 10}))
    policy = write_policy(tmp_path, app_url, {
        "users": USERS,
        "orders": simple_dataset("orders", "at", belongs_to={"users": "user_id"}),
        "items": simple_dataset("items", "at", belongs_to={"orders": "order_id"})})
    plan = plan_api(policy)
    cascades = {(a["dataset"], a["parent"]): a["rows"] for a in plan["actions"]
                if a["action"] == "cascade"}
    assert cascades == {("orders", "users"): 2, ("items", "users"): 3, ("items", "orders"): 0}
    result = run_api(policy)
    assert result.ok, result.as_dict()
    assert key_set(app_url, "SELECT id FROM users") == {2, 3}
    assert key_set(app_url, "SELECT id FROM orders") == {20, 30}
    assert key_set(app_url, "SELECT id FROM items") == {200, 300, 999}


def test_diamond_graph_cascades_once_and_verifies(app_url: str, tmp_path: Path) -> None:
    sql(app_url, *users_ddl(app_url),
        "CREATE TABLE devices (id INTEGER PRIMARY KEY, user_id INTEGER, at INTEGER)",
        "CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_id INTEGER, device_id INTEGER, "
        "at INTEGER)",
        ("INSERT INTO devices VALUES (10, 1, :n), (20, 2, :n)", {"n": CUTOFF_EPOCH + 10}),
        ("INSERT INTO sessions VALUES (1, 1, 10, :n), (2, 2, 10, :n), (3, 1, NULL, :n), "
         "(4, 2, 20, :n)", {"n": CUTOFF_EPOCH + 10}))
    policy = write_policy(tmp_path, app_url, {
        "users": USERS,
        "devices": simple_dataset("devices", "at", belongs_to={"users": "user_id"}),
        "sessions": simple_dataset("sessions", "at",
                                   belongs_to={"users": "user_id", "devices": "device_id"})})
    plan = plan_api(policy)
    lines = [(a["dataset"], a["parent"]) for a in plan["actions"] if a["action"] == "cascade"]
    assert sorted(lines) == [("devices", "users"), ("sessions", "devices"),
                             ("sessions", "users")]
    result = run_api(policy)
    assert key_set(app_url, "SELECT id FROM sessions") == {4}
    assert key_set(app_url, "SELECT id FROM devices") == {20}
    assert result.ok, result.as_dict()


def test_child_with_two_parents_goes_with_either(app_url: str, tmp_path: Path) -> None:
    sql(app_url, *users_ddl(app_url),
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, at INTEGER)",
        "CREATE TABLE comments (id INTEGER PRIMARY KEY, user_id INTEGER, post_id INTEGER, "
        "at INTEGER)",
        ("INSERT INTO posts VALUES (1, :o), (2, :n)",
         {"o": CUTOFF_EPOCH - 10, "n": CUTOFF_EPOCH + 10}),
        ("INSERT INTO comments VALUES (1, 2, 1, :n), (2, 1, 2, :n), (3, 2, 2, :n), "
         "(4, NULL, NULL, :n)", {"n": CUTOFF_EPOCH + 10}))
    policy = write_policy(tmp_path, app_url, {
        "users": USERS, "posts": simple_dataset("posts", "at"),
        "comments": simple_dataset("comments", "at",
                                   belongs_to={"users": "user_id", "posts": "post_id"})})
    result = run_api(policy)
    assert result.ok, result.as_dict()
    assert key_set(app_url, "SELECT id FROM posts") == {2}
    assert key_set(app_url, "SELECT id FROM comments") == {3, 4}


def test_anonymize_cascade_keeps_a_not_null_link(app_url: str, tmp_path: Path) -> None:
    sql(app_url, *users_ddl(app_url),
        "CREATE TABLE profiles (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, bio TEXT)",
        "INSERT INTO profiles VALUES (1, 1, 'likes cats'), (2, 2, 'likes dogs')")
    policy = write_policy(tmp_path, app_url, {
        "users": USERS,
        "profiles": {"store": "app", "table": "profiles", "class": "pii",
                     "belongs_to": {"users": "user_id"}, "erasure": "anonymize",
                     "fields": {"bio": {"class": "pii", "anonymize": "redact"}}}})
    result = run_api(policy)
    assert result.ok, result.as_dict()
    assert sorted(rows(app_url, "SELECT id, user_id, bio FROM profiles")) == [
        (1, 1, "[redacted]"), (2, 2, "likes dogs")]
    again = run_api(policy)
    assert again.ok and sum(a.done for a in again.actions) == 0


# -- real foreign keys ---------------------------------------------------------------------
def fk_schema(url: str, on_delete: str = "") -> list[str | tuple[str, Any]]:
    return [*users_ddl(url),
            "CREATE TABLE sessions (id INTEGER PRIMARY KEY, "
            "user_id INTEGER REFERENCES users (id) ON DELETE CASCADE, at INTEGER)",
            f"CREATE TABLE invoices (id INTEGER PRIMARY KEY, "
            f"user_id INTEGER REFERENCES users (id) {on_delete}, at INTEGER)",
            ("INSERT INTO sessions VALUES (1, 1, :n), (2, 2, :n)", {"n": CUTOFF_EPOCH + 10}),
            ("INSERT INTO invoices VALUES (1, 1, :n), (2, 2, :n)", {"n": CUTOFF_EPOCH + 10})]


def fk_policy(tmp_path: Path, url: str, users: dict[str, Any] | None = None,
              invoices_extra: dict[str, Any] | None = None) -> Path:
    invoices = {"store": "app", "table": "invoices", "class": "operational",
                "belongs_to": {"users": "user_id"}, "erasure": "retain",
                "legal_basis": "tax law: 7 years",
                "retention": [{"keep": "7y", "after": "at"}]}
    invoices.update(invoices_extra or {})
    return write_policy(tmp_path, url, {
        "users": users or USERS,
        "sessions": simple_dataset("sessions", "at", belongs_to={"users": "user_id"}),
        "invoices": invoices})


def purge_step(result: Any) -> Any:
    return next(a for a in result.actions
                if a.planned.step.dataset == "users" and a.planned.step.action == "purge")


def test_sqlite_foreign_keys_retained_child_keeps_its_parent(sqlite_url: str,
                                                             tmp_path: Path) -> None:
    """A retained invoice with a foreign key to its user keeps that user: deleting the user
    would orphan (or, with the pragma on, cascade into) a row the policy keeps."""
    sql(sqlite_url, *fk_schema(sqlite_url, "ON DELETE CASCADE"))
    result = run_api(fk_policy(tmp_path, sqlite_url))
    assert result.ok, result.as_dict()
    purge = purge_step(result)
    assert (purge.planned.blocked, purge.done, purge.verified) == (1, 0, True)
    assert key_set(sqlite_url, "SELECT id FROM users") == {1, 2, 3}
    assert key_set(sqlite_url, "SELECT id FROM invoices") == {1, 2}


def test_postgres_fk_blocked_parent_is_reported_not_half_deleted(
        postgres_url: str, tmp_path: Path) -> None:
    """A retained child with a plain FK blocks its parent's purge: the plan and run say so
    (`blocked`), nothing errors, and the parent's cascades do not run either."""
    sql(postgres_url, *fk_schema(postgres_url))
    policy = fk_policy(tmp_path, postgres_url)
    proc = lethe("run", "--policy", str(policy), "--now", NOW_ARG, "--json", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "ada@example.com" not in out
    data = json.loads(proc.stdout)
    purge = next(a for a in data["actions"] if a["dataset"] == "users"
                 and a["action"] == "purge")
    assert (purge["blocked"], purge["done"], purge["verified"]) == (1, 0, True)
    assert "error" not in purge
    assert key_set(postgres_url, "SELECT id FROM users") == {1, 2, 3}
    assert key_set(postgres_url, "SELECT id FROM sessions") == {1, 2}
    assert key_set(postgres_url, "SELECT id FROM invoices") == {1, 2}


def test_postgres_fk_blocked_parent_does_not_block_the_others(postgres_url: str,
                                                              tmp_path: Path) -> None:
    sql(postgres_url, *fk_schema(postgres_url),
        ("INSERT INTO users VALUES (4, 'dee@example.com', :g, NULL), "
         "(5, 'eve@example.com', :g, NULL)", {"g": iso(NOW - timedelta(days=40))}))
    result = run_api(fk_policy(tmp_path, postgres_url))
    assert result.ok, result.as_dict()
    purge = purge_step(result)
    assert (purge.planned.blocked, purge.done) == (1, 2)  # user 1 cannot go: reported
    assert key_set(postgres_url, "SELECT id FROM users") == {1, 2, 3}  # 4 and 5 purged


def test_postgres_on_delete_cascade_must_not_destroy_retained_rows(postgres_url: str,
                                                                  tmp_path: Path) -> None:
    sql(postgres_url, *fk_schema(postgres_url, "ON DELETE CASCADE"))
    run_api(fk_policy(tmp_path, postgres_url))
    assert key_set(postgres_url, "SELECT id FROM invoices") == {1, 2}


def test_postgres_on_delete_cascade_must_not_destroy_held_rows(postgres_url: str,
                                                              tmp_path: Path) -> None:
    sql(postgres_url, *fk_schema(postgres_url, "ON DELETE CASCADE"))
    policy = fk_policy(tmp_path, postgres_url, invoices_extra={
        "belongs_to": {}, "erasure": "delete", "legal_basis": None,
        "retention": [{"keep": "forever", "after": "at"}]})
    hold = lethe("hold", "place", "--dataset", "invoices", "--reason", "litigation",
                 "--policy", str(policy), "--json", cwd=tmp_path)
    assert hold.returncode == 0, hold.stderr
    run_api(policy)
    assert key_set(postgres_url, "SELECT id FROM invoices") == {1, 2}


# -- anonymize errors ----------------------------------------------------------------------
@pytest.mark.parametrize("method,ddl", [
    ("hash", "CREATE TABLE hits (id INTEGER PRIMARY KEY, ref INTEGER, at INTEGER)"),
    ("null", "CREATE TABLE hits (id INTEGER PRIMARY KEY, ref INTEGER NOT NULL, at INTEGER)"),
    ("redact", "CREATE TABLE hits (id INTEGER PRIMARY KEY, ref VARCHAR(5), at INTEGER)"),
])
def test_postgres_anonymize_type_errors_are_clean(postgres_url: str, tmp_path: Path,
                                                  method: str, ddl: str) -> None:
    """hash on an int column, null on a NOT NULL column, redact into VARCHAR(5): exit 1, the
    failing step names the dataset, no traceback, no row value anywhere."""
    sql(postgres_url, ddl, ("INSERT INTO hits VALUES (1, 42424, :a), (2, 97531, :a)",
                            {"a": CUTOFF_EPOCH - 10}))
    policy = write_policy(tmp_path, postgres_url, {"web_hits": {
        "store": "app", "table": "hits", "class": "behavioral",
        "fields": {"ref": {"class": "pii", "anonymize": method}},
        "retention": [{"keep": "30d", "after": "at", "action": "anonymize"}]}})
    proc = lethe("run", "--policy", str(policy), "--now", NOW_ARG, "--json", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "internal error" not in out, out
    for value in ("42424", "97531"):
        assert value not in out, out
    data = json.loads(proc.stdout)
    (step,) = data["actions"]
    assert step["dataset"] == "web_hits" and step["error"] and not step["verified"]
    assert sorted(rows(postgres_url, "SELECT ref FROM hits")) == [("42424",), ("97531",)] \
        or sorted(rows(postgres_url, "SELECT ref FROM hits")) == [(42424,), (97531,)]


def test_sqlite_null_on_not_null_column_is_clean(sqlite_url: str, tmp_path: Path) -> None:
    sql(sqlite_url, "CREATE TABLE hits (id INTEGER PRIMARY KEY, ip TEXT NOT NULL, at INTEGER)",
        ("INSERT INTO hits VALUES (1, '203.0.113.77', :a)", {"a": CUTOFF_EPOCH - 10}))
    policy = write_policy(tmp_path, sqlite_url, {"web_hits": {
        "store": "app", "table": "hits", "class": "behavioral",
        "fields": {"ip": {"class": "pii", "anonymize": None}},
        "retention": [{"keep": "30d", "after": "at", "action": "anonymize"}]}})
    proc = lethe("run", "--policy", str(policy), "--now", NOW_ARG, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "203.0.113.77" not in out, out
    assert rows(sqlite_url, "SELECT ip FROM hits") == [("203.0.113.77",)]


# -- holds ---------------------------------------------------------------------------------
def hold_place(policy: Path, *scope: str) -> None:
    proc = lethe("hold", "place", *scope, "--reason", "case 7", "--policy", str(policy),
                 "--json", cwd=policy.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workspace_hold_on_org_rows_and_hold_on_a_parent_dataset(app_url: str,
                                                                 tmp_path: Path) -> None:
    sql(app_url, *users_ddl(app_url),
        "CREATE TABLE events (id INTEGER PRIMARY KEY, ws TEXT, at INTEGER)",
        "CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_id INTEGER, at INTEGER)",
        ("INSERT INTO events VALUES (1, '__org__', :o), (2, 'ws_a', :o), (3, '__org__', :n)",
         {"o": CUTOFF_EPOCH - 10, "n": CUTOFF_EPOCH + 10}),
        ("INSERT INTO sessions VALUES (1, 1, :o), (2, 2, :o), (3, NULL, :o)",
         {"o": CUTOFF_EPOCH - 10}))
    policy = write_policy(tmp_path, app_url, {
        "users": USERS,
        "events": simple_dataset("events", "at", workspace="ws"),
        "sessions": simple_dataset("sessions", "at", belongs_to={"users": "user_id"})})
    hold_place(policy, "--workspace", "__org__")
    hold_place(policy, "--dataset", "users")
    plan = steps(plan_api(policy))
    assert plan[("users", None, "purge")]["held"] == 1
    assert plan[("sessions", 0, "delete")]["held"] == 2  # linked to held users
    result = run_api(policy)
    assert result.ok, result.as_dict()
    assert key_set(app_url, "SELECT id FROM events") == {1, 3}
    assert key_set(app_url, "SELECT id FROM users") == {1, 2, 3}
    assert key_set(app_url, "SELECT id FROM sessions") == {1, 2}


def test_postgres_subject_hold_by_email_with_uuid_ids(postgres_url: str,
                                                      tmp_path: Path) -> None:
    sql(postgres_url, "CREATE TABLE users (id UUID PRIMARY KEY, email TEXT, closed_at "
                      "TIMESTAMPTZ)",
        ("INSERT INTO users VALUES ('00000000-0000-0000-0000-000000000001', "
         "'ada@example.com', :o), ('00000000-0000-0000-0000-000000000002', "
         "'bob@example.com', :o)", {"o": NOW - timedelta(days=400)}))
    policy = write_policy(tmp_path, postgres_url, {"users": {
        "store": "app", "table": "users", "class": "pii",
        "retention": [{"keep": "90d", "after": "closed_at"}]}},
        subjects={"user": {"dataset": "users", "identities": ["email", "id"]}})
    hold_place(policy, "--subject", "user:ada@example.com")
    proc = lethe("plan", "--policy", str(policy), "--now", NOW_ARG, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (step,) = json.loads(proc.stdout)["actions"]
    assert (step["rows"], step["held"]) == (1, 1)


def test_subject_hold_with_a_long_numeric_identity(app_url: str, tmp_path: Path) -> None:
    ts = "TIMESTAMPTZ" if is_pg(app_url) else "TIMESTAMP"
    sql(app_url, f"CREATE TABLE users (id INTEGER PRIMARY KEY, account TEXT, closed_at {ts})",
        ("INSERT INTO users VALUES (1, '123456789012345678901234', :o), (2, '77', :o)",
         {"o": iso(NOW - timedelta(days=400))}))
    policy = write_policy(tmp_path, app_url, {"users": {
        "store": "app", "table": "users", "class": "pii",
        "retention": [{"keep": "90d", "after": "closed_at"}]}},
        subjects={"user": {"dataset": "users", "identities": ["account", "id"]}})
    hold_place(policy, "--subject", "user:123456789012345678901234")
    proc = lethe("run", "--policy", str(policy), "--now", NOW_ARG, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert key_set(app_url, "SELECT id FROM users") == {1}


# -- durations and the clock ---------------------------------------------------------------
def test_calendar_months_and_years_on_february_29(app_url: str, tmp_path: Path) -> None:
    """12mo before 2028-02-29T12:00Z is 2027-02-28T12:00Z; 7y before is 2021-02-28T12:00Z."""
    now = datetime(2028, 2, 29, 12, tzinfo=UTC)
    year = datetime(2027, 2, 28, 12, tzinfo=UTC)
    seven = datetime(2021, 2, 28, 12, tzinfo=UTC)
    sql(app_url, "CREATE TABLE a (id INTEGER PRIMARY KEY, at BIGINT)",
        "CREATE TABLE b (id INTEGER PRIMARY KEY, at BIGINT)",
        ("INSERT INTO a VALUES (1, :x), (2, :y), (3, :z)",
         {"x": int(year.timestamp()) - 1, "y": int(year.timestamp()),
          "z": int(datetime(2027, 3, 1, tzinfo=UTC).timestamp())}),
        ("INSERT INTO b VALUES (1, :x), (2, :y), (3, :z)",
         {"x": int(seven.timestamp()) - 1, "y": int(seven.timestamp()),
          "z": int(datetime(2021, 3, 1, tzinfo=UTC).timestamp())}))
    policy = write_policy(tmp_path, app_url, {"a": simple_dataset("a", "at", keep="12mo"),
                                              "b": simple_dataset("b", "at", keep="7y")})
    assert run_api(policy, now).ok
    assert key_set(app_url, "SELECT id FROM a") == {2, 3}
    assert key_set(app_url, "SELECT id FROM b") == {2, 3}


def test_forever_and_now_with_an_offset(sqlite_url: str, tmp_path: Path) -> None:
    sql(sqlite_url, "CREATE TABLE ev (id INTEGER PRIMARY KEY, at INTEGER)",
        "CREATE TABLE keep (id INTEGER PRIMARY KEY, at INTEGER)",
        ("INSERT INTO ev VALUES (1, :o), (2, :n)",
         {"o": CUTOFF_EPOCH - 1, "n": CUTOFF_EPOCH}),
        "INSERT INTO keep VALUES (1, 0), (2, -999999999)")
    policy = write_policy(tmp_path, sqlite_url, {
        "ev": simple_dataset("ev", "at"),
        "keep": simple_dataset("keep", "at", keep="forever")})
    proc = lethe("run", "--policy", str(policy), "--now", "2026-06-01T02:00:00+02:00",
                 "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert datetime.fromisoformat(data["now"]) == NOW
    assert {(a["dataset"], a["rows"], a["done"]) for a in data["actions"]} == {
        ("ev", 1, 1), ("keep", 0, 0)}
    assert key_set(sqlite_url, "SELECT id FROM ev") == {2}
    assert key_set(sqlite_url, "SELECT id FROM keep") == {1, 2}


def test_very_long_keep_is_not_an_internal_error(sqlite_url: str, tmp_path: Path) -> None:
    sql(sqlite_url, "CREATE TABLE ev (id INTEGER PRIMARY KEY, at INTEGER)",
        "INSERT INTO ev VALUES (1, 0)")
    policy = write_policy(tmp_path, sqlite_url, {"ev": simple_dataset("ev", "at", keep="3000y"),
                                                 "ev2": simple_dataset("ev", "at",
                                                                       keep="1000000d")})
    proc = lethe("plan", "--policy", str(policy), "--now", NOW_ARG, "--json", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "internal error" not in out, out
    if proc.returncode == 2:  # rejecting it is fine too, with the path
        assert "retention[0].keep" in proc.stderr
    else:
        assert proc.returncode == 0, out
        assert all(a["rows"] == 0 for a in json.loads(proc.stdout)["actions"])


def test_soft_delete_writes_epoch_milliseconds_where_the_column_uses_them(
        sqlite_url: str, tmp_path: Path) -> None:
    ms = int(NOW.timestamp()) * 1000
    sql(sqlite_url, "CREATE TABLE users (id INTEGER PRIMARY KEY, closed_at INTEGER, "
                    "deleted_at INTEGER)",
        ("INSERT INTO users VALUES (1, :old, NULL), (2, NULL, :del)",
         {"old": ms - 200 * 86_400_000, "del": ms - 5 * 86_400_000}))
    policy = write_policy(tmp_path, sqlite_url, {"users": {
        "store": "app", "table": "users", "class": "pii",
        "soft_delete": {"column": "deleted_at", "recover_for": "30d"},
        "retention": [{"keep": "90d", "after": "closed_at", "action": "soft-delete"}]}})
    assert run_api(policy).ok
    assert rows(sqlite_url, "SELECT deleted_at FROM users WHERE id = 1") == [(ms,)]


# -- the command line contract -------------------------------------------------------------
def test_cli_json_contract_unknown_dataset_and_unset_variable(sqlite_url: str,
                                                              tmp_path: Path) -> None:
    sql(sqlite_url, *users_ddl(sqlite_url),
        "CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_id INTEGER, at INTEGER)",
        ("INSERT INTO sessions VALUES (1, 1, :n), (2, 2, :o)",
         {"n": CUTOFF_EPOCH + 10, "o": CUTOFF_EPOCH - 10}))
    datasets = {"users": USERS,
                "sessions": simple_dataset("sessions", "at", belongs_to={"users": "user_id"})}
    policy = write_policy(tmp_path, "${LETHE_ADV_URL}", datasets)
    env = {"LETHE_ADV_URL": sqlite_url}

    plan = lethe("plan", "--policy", str(policy), "--now", NOW_ARG, "--json", cwd=tmp_path,
                 env=env)
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    assert set(data) >= {"now", "actions"}
    for action in data["actions"]:
        assert set(action) >= {"dataset", "rule", "action", "rows", "held"}
    by_key = {(a["dataset"], a["rule"], a["action"]): a["rows"] for a in data["actions"]}
    assert by_key == {("sessions", None, "cascade"): 1, ("sessions", 0, "delete"): 1,
                      ("users", None, "purge"): 1}

    run = lethe("run", "--policy", str(policy), "--now", NOW_ARG, "--json", cwd=tmp_path,
                env=env)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert set(data) >= {"run", "now", "actions"}
    for action in data["actions"]:
        assert set(action) >= {"dataset", "rule", "action", "rows", "held", "done", "verified"}
        assert action["verified"] is True and action["done"] == action["rows"]
    again = json.loads(lethe("run", "--policy", str(policy), "--now", NOW_ARG, "--json",
                             cwd=tmp_path, env=env).stdout)
    assert again["run"] != data["run"]
    assert all(a["rows"] == 0 and a["done"] == 0 for a in again["actions"])

    unknown = lethe("plan", "--dataset", "nope", "--policy", str(policy), "--json",
                    cwd=tmp_path, env=env)
    assert_clean_failure(unknown, 2, "nope")
    assert json.loads(unknown.stdout)["error"]["path"] == "--dataset"

    unset = lethe("plan", "--policy", str(policy), "--json", cwd=tmp_path)
    assert_clean_failure(unset, 2, "stores.app.url", "LETHE_ADV_URL")
    assert set(json.loads(unset.stdout)["error"]) >= {"type", "message", "path"}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize("batch_size", [1, 10_000])
def test_uuid_and_text_keys_walk_in_batches(backend: str, batch_size: int,
                                            request: pytest.FixtureRequest,
                                            tmp_path: Path) -> None:
    app_url = backend_url(request, backend, tmp_path)
    key_type = "UUID" if is_pg(app_url) else "TEXT"
    keys = [f"{i:08x}-0000-4000-8000-{i * 7919:012x}" for i in (9, 3, 250, 17, 64, 1)]
    sql(app_url, f"CREATE TABLE tokens (id {key_type} PRIMARY KEY, at BIGINT)",
        ("INSERT INTO tokens VALUES (CAST(:k AS " + key_type + "), :a)",
         [{"k": k, "a": CUTOFF_EPOCH - 10 if n % 2 else CUTOFF_EPOCH + 10}
          for n, k in enumerate(keys)]))
    policy = write_policy(tmp_path, app_url, {"tokens": simple_dataset("tokens", "at")})
    result = run_api(policy, batch_size=batch_size)
    assert result.ok, result.as_dict()
    assert result.actions[0].done == 3
    assert {str(k) for k in key_set(app_url, "SELECT id FROM tokens")} == set(keys[0::2])


def test_usage_errors_are_one_line_and_json(tmp_path: Path) -> None:
    """docs/cli.md: errors are one line on stderr; with --json stdout carries {"error": ...}."""
    for args in (["run", "--batch-size", "0"], ["plan", "--no-such-option"]):
        proc = lethe(*args, "--json", cwd=tmp_path)
        assert_clean_failure(proc, 2)
        assert set(json.loads(proc.stdout)["error"]) >= {"type", "message", "path"}
