"""The plan counts each step as its turn will find the database.

Children go first: a table that references accounts through a real foreign key (no
cascade declared) has its own old rows deleted, or its link nulled by anonymization,
before the accounts' purge comes. Accounts only those rows referenced are free by then,
so the plan must count them as purged, not blocked, and must count the cascades of
their children too. A hold on a referencing row keeps its account blocked, in the plan
and in the run. On an unchanged database, every line of the plan equals what run does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml

from lethe.clock import Clock
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.holds import parse_scope, place_hold
from lethe.policy.load import load_policy
from lethe.runtime import Runtime
from lethe.stores.sql import normalize_url

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _policy(tmp_path: Path, app: str) -> Path:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Ahead Inc",
        "control": f"sqlite:///{tmp_path / 'state.db'}",
        "audit": {"key": str(tmp_path / "audit.key")},
        "stores": {"app": {"url": app}},
        "datasets": {
            "accounts": {"store": "app", "table": "accounts", "class": "pii",
                         "soft_delete": {"column": "deleted_at", "recover_for": "30d"}},
            "logins": {"store": "app", "table": "logins", "class": "operational",
                       "belongs_to": {"accounts": "account_id"},
                       "retention": [{"keep": "365d", "after": "at"}]},
            "errors": {"store": "app", "table": "errors", "class": "operational",
                       "retention": [{"keep": "30d", "after": "at"}]},
            "clicks": {"store": "app", "table": "clicks", "class": "behavioral",
                       "fields": {"account_id": {"class": "pii", "anonymize": "null"}},
                       "retention": [{"keep": "90d", "after": "at", "action": "anonymize"}]},
        }}, sort_keys=False), encoding="utf-8")
    return path


def _fill(app: str) -> None:
    gone = NOW - timedelta(days=60)
    old, fresh = NOW - timedelta(days=400), NOW - timedelta(days=1)
    engine = sa.create_engine(normalize_url(app))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE accounts (id integer PRIMARY KEY, "
                             "deleted_at timestamp)"))
        for table in ("logins", "errors", "clicks"):
            conn.execute(sa.text(
                f"CREATE TABLE {table} (id integer PRIMARY KEY, account_id integer "
                "REFERENCES accounts (id), at timestamp NOT NULL)"))
        # accounts 1-6 soft-deleted past the window; 7 active
        conn.execute(sa.text("INSERT INTO accounts VALUES (:id, :d)"),
                     [{"id": i, "d": gone.replace(tzinfo=None) if i < 7 else None}
                      for i in range(1, 8)])
        rows = {  # account -> what points at it
            "errors": [(1, old), (2, old), (3, fresh), (5, old)],
            "clicks": [(2, old), (4, old), (6, fresh)],
            "logins": [(1, fresh), (2, fresh), (4, fresh), (7, fresh)],
        }
        for table, refs in rows.items():
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (:id, :a, :at)"), [
                {"id": n, "a": a, "at": at.replace(tzinfo=None)}
                for n, (a, at) in enumerate(refs, start=1)])
    engine.dispose()


def _lines(actions: list[dict[str, object]], field: str) -> dict[tuple[object, ...], object]:
    return {(a["dataset"], a["rule"], a["action"], a.get("parent")): a[field]
            for a in actions}


def _key(table: str, postgres: bool) -> str:
    """A foreign key of the fixture as plans name it."""
    where = f"{table}.account_id"
    return f"{table}_account_id_fkey ({where})" if postgres else f"foreign key {where}"


def test_plan_counts_what_earlier_steps_free_and_run_does_exactly_that(
        tmp_path: Path, app_url: str) -> None:
    _fill(app_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, app_url)), Clock(NOW))
    try:
        # a hold on the errors keeps every error, so their accounts stay blocked
        place_hold(rt.control, rt.audit, rt.clock,
                   parse_scope(rt.policy, None, None, "errors"), "case 9")
        plan = build_plan(rt)
        planned = _lines([a.as_dict() for a in plan.actions], "rows")
        blocked = _lines([a.as_dict() for a in plan.actions], "blocked")
        skips = _lines([a.as_dict() for a in plan.actions], "skips")
        blocked_by = _lines([a.as_dict() for a in plan.actions], "blocked_by")
        result = execute(rt, plan)
        done = _lines([a.as_dict() for a in result.actions], "done")
    finally:
        rt.close()
    assert planned == done
    # errors are all held: accounts 1, 2, 3, 5 stay referenced; clicks of 2 and 4 are
    # nulled (4 is then free), 6's click is fresh; so only 4 is purged.
    assert planned[("accounts", None, "purge", None)] == 1
    assert blocked[("accounts", None, "purge", None)] == 5
    # each key named, with the rows it keeps: the held errors keep 1, 2, 3, 5; the
    # fresh click keeps 6 (PostgreSQL names the constraints; SQLite's are unnamed)
    by_key = {str(b["foreign_key"]): b["rows"]  # type: ignore[index]
              for b in blocked_by[("accounts", None, "purge", None)]}  # type: ignore[attr-defined]
    postgres = app_url.startswith("postgresql")
    assert by_key == {_key("errors", postgres): 4, _key("clicks", postgres): 1}
    [skip] = skips[("accounts", None, "purge", None)]  # type: ignore[misc]
    assert skip["items"] == 5 and "which no rule or cascade clears" in skip["reason"]
    assert all(key in skip["reason"] for key in by_key)
    assert skips[("errors", 0, "delete", None)] == [
        {"items": 3, "reason": "held by a legal hold"}]  # the old errors of 1, 2 and 5
    assert planned[("logins", None, "cascade", "accounts")] == 1  # account 4's login
    engine = sa.create_engine(normalize_url(app_url))
    with engine.connect() as conn:
        left = set(conn.execute(sa.text("SELECT id FROM accounts")).scalars())
    engine.dispose()
    assert left == {1, 2, 3, 5, 6, 7}


def test_without_the_hold_the_referencing_rows_go_first_and_free_their_accounts(
        tmp_path: Path, app_url: str) -> None:
    _fill(app_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, app_url)), Clock(NOW))
    try:
        plan = build_plan(rt)
        planned = _lines([a.as_dict() for a in plan.actions], "rows")
        result = execute(rt, plan)
        done = _lines([a.as_dict() for a in result.actions], "done")
        assert result.ok
    finally:
        rt.close()
    assert planned == done
    # old errors of 1, 2, 5 deleted; old clicks of 2, 4 nulled: 1, 2, 4, 5 go; 3 (fresh
    # error) and 6 (fresh click) stay blocked
    assert planned[("accounts", None, "purge", None)] == 4
    assert planned[("logins", None, "cascade", "accounts")] == 3  # logins of 1, 2, 4
    engine = sa.create_engine(normalize_url(app_url))
    with engine.connect() as conn:
        left = set(conn.execute(sa.text("SELECT id FROM accounts")).scalars())
    engine.dispose()
    assert left == {3, 6, 7}
