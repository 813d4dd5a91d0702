"""`check` finds what is wrong between the policy and the live stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lethe.governance.check import check
from tests.fixtures import build_app, runtime, users, write_policy


def findings(policy: Path) -> list[tuple[str, str, str]]:
    rt = runtime(policy)
    try:
        return [(f.severity, f.code, f.path) for f in check(rt.catalog).findings]
    finally:
        rt.close()


def test_clean_database_has_no_findings(app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    assert findings(write_policy(tmp_path, app_url)) == []


def test_workspace_leaks_are_counted_not_shown(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.id == 1).values(workspace_id=None))
        conn.execute(users.update().where(users.c.id == 2).values(workspace_id=""))
    rt = runtime(write_policy(tmp_path, app_url))
    report = check(rt.catalog)
    rt.close()
    assert not report.ok
    [leak] = report.findings
    assert (leak.code, leak.path) == ("workspace-leak", "datasets.users.workspace")
    assert leak.message.startswith("2 rows")
    assert "example.com" not in leak.message


def test_missing_table_column_and_shadow_table(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE exports_tmp (id INTEGER PRIMARY KEY)"))
    policy = write_policy(tmp_path, app_url, datasets__events__table="evnts",
                          datasets__sessions__retention=[{"keep": "1d", "after": "seen"}])
    got = findings(policy)
    assert ("error", "missing-table", "datasets.events.table") in got
    assert ("error", "missing-column", "datasets.sessions.retention[0].after") in got
    assert ("error", "undeclared-table", "stores.app") in got


def test_unindexed_link_is_a_warning(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_sessions_user_id"))
    got = findings(write_policy(tmp_path, app_url))
    assert got == [("warning", "unindexed-link", "datasets.sessions.belongs_to.users")]


def test_a_non_unique_key_is_flagged(app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    assert findings(write_policy(tmp_path, app_url, datasets__sessions__key="id")) == []
    got = findings(write_policy(tmp_path, app_url, datasets__sessions__key="user_id"))
    assert ("warning", "non-unique-key", "datasets.sessions.key") in got


def test_a_key_that_accepts_null_is_flagged(app_url: str, tmp_path: Path) -> None:
    """Key windows never hold a row whose key is NULL: such rows are never swept."""
    engine = build_app(app_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE sessions ADD COLUMN token VARCHAR(40)"))
        conn.execute(sa.text("CREATE UNIQUE INDEX ux_sessions_token ON sessions (token)"))
    got = findings(write_policy(tmp_path, app_url, datasets__sessions__key="token"))
    assert got == [("warning", "nullable-key", "datasets.sessions.key")]
    got = findings(write_policy(tmp_path, app_url, datasets__sessions__key="user_id"))
    assert ("warning", "nullable-key", "datasets.sessions.key") in got


def test_a_recovery_window_as_long_as_the_request_deadline_is_an_error(
        app_url: str, tmp_path: Path) -> None:
    """Issue 19, item 3: the page promises erasure within 30 days and recovery for 30
    days; an erasure completes only after the window, so every one would be late."""
    build_app(app_url)
    for window, expected in [("30d", True), ("1mo", True), ("29d", False)]:
        policy = write_policy(tmp_path, app_url, datasets__users__soft_delete={
            "column": "deleted_at", "recover_for": window})
        found = ("error", "erasure-deadline", "datasets.users.soft_delete") in \
            findings(policy)
        assert found is expected, window


def test_a_deletion_sla_makes_check_report_rows_that_outlived_it(app_url: str,
                                                                 tmp_path: Path) -> None:
    """Issue 19, item 2: with `deletion_sla: 7d`, a rule whose oldest row nothing keeps is
    more than seven days past its limit is an error; rows a hold keeps are exceptions,
    and after a run nothing is late."""
    from lethe.commands.checks import check_policy
    from lethe.engine.execute import execute
    from lethe.engine.plan import build_plan
    from lethe.holds import parse_scope, place_hold

    build_app(app_url)
    policy = write_policy(tmp_path, app_url, deletion_sla="7d")

    def late(rt: Any) -> set[str]:
        return {f.path for f in check_policy(rt).findings if f.code == "deletion-sla"}

    rt = runtime(policy)
    try:
        before = late(rt)
        assert {"datasets.sessions.retention[0]", "datasets.events.retention[1]"} <= before
        place_hold(rt.control, rt.audit, rt.clock,
                   parse_scope(rt.policy, None, None, "sessions"), "litigation")
        assert "datasets.sessions.retention[0]" not in late(rt)  # held: an exception
        assert not check_policy(rt).ok
        execute(rt, build_plan(rt))
        assert late(rt) == set()
    finally:
        rt.close()
