"""Retention periods each customer sets (issue 22, item 1), on SQLite and PostgreSQL.

`keep: {from: workspaces.message_retention_days, default: 90d, min: 7d, max: 365d}`:
each message is kept its workspace's setting, clamped to the organization's bounds;
the default where the message has no workspace, the workspace is gone, has no setting,
or a setting that is not a positive number. Evaluated in the store's SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lethe import Clock, Runtime, build_plan, execute, load_policy
from lethe.errors import PolicyError
from lethe.governance.check import check
from lethe.reports.trust_wording import sentence
from lethe.stores.sql import normalize_url

NOW = datetime(2026, 6, 1, tzinfo=UTC)
AGES = (5, 8, 20, 100, 370, 500)  # days: one message of each age per workspace
SETTINGS: dict[str | None, Any] = {
    "short": 10, "long": 400, "unset": None, "zero": 0, "tiny": 1, "negative": -30}
# workspace -> the period its messages are kept, in days (None: no such workspace row)
KEPT = {"short": 10, "long": 365, "unset": 90, "zero": 90, "tiny": 7, "negative": 90,
        None: 90, "gone": 90}

metadata = sa.MetaData()
workspaces = sa.Table("workspaces", metadata, sa.Column("id", sa.String(20), primary_key=True),
                      sa.Column("message_retention_days", sa.Integer),
                      sa.Column("plan", sa.String(20)))
messages = sa.Table("messages", metadata, sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("workspace_id", sa.String(20)),
                    sa.Column("created_at", sa.DateTime(timezone=True)))


def _build(url: str) -> dict[int, tuple[str | None, int]]:
    """The tables; message id -> (its workspace, its age in days)."""
    engine = sa.create_engine(normalize_url(url))
    metadata.drop_all(engine)
    metadata.create_all(engine)
    made: dict[int, tuple[str | None, int]] = {}
    with engine.begin() as conn:
        conn.execute(workspaces.insert(), [
            {"id": ws, "message_retention_days": days, "plan": "free"}
            for ws, days in SETTINGS.items()])
        for ws in KEPT:
            for age in AGES:
                made[len(made) + 1] = (ws, age)
        conn.execute(messages.insert(), [
            {"id": i, "workspace_id": ws, "created_at": NOW - timedelta(days=age, hours=1)}
            for i, (ws, age) in made.items()])
    engine.dispose()
    return made


def _policy(tmp_path: Path, url: str, keep: Any,
            retention: list[dict[str, Any]] | None = None) -> Path:
    """workspaces and their messages; the messages' rule keeps `keep` after created_at
    (or the rules are `retention`)."""
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Acme", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}},
        "datasets": {
            "workspaces": {"store": "app", "table": "workspaces", "class": "operational"},
            "messages": {"store": "app", "table": "messages", "class": "pii",
                         "belongs_to": {"workspaces": "workspace_id"},
                         "retention": retention or [{"keep": keep,
                                                     "after": "created_at"}]}}}))
    return path


KEEP = {"from": "workspaces.message_retention_days", "default": "90d", "min": "7d",
        "max": "365d"}


def _left(url: str) -> set[int]:
    engine = sa.create_engine(normalize_url(url))
    with engine.connect() as conn:
        found = set(conn.execute(sa.select(messages.c.id)).scalars())
    engine.dispose()
    return found


def test_each_row_is_kept_its_parents_period_within_the_bounds(app_url: str,
                                                                tmp_path: Path) -> None:
    made = _build(app_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, app_url, KEEP)), Clock(NOW))
    plan = build_plan(rt)
    due = {i for i, (ws, age) in made.items() if age > KEPT[ws]}
    assert [a.rows for a in plan.actions if a.step.dataset == "messages"] == [len(due)]
    result = execute(rt, plan, batch_size=7)
    rt.close()
    assert result.ok, result.as_dict()
    assert _left(app_url) == set(made) - due
    # every kind of setting decided something: the clamp, the default, the setting
    assert {made[i][0] for i in due} == set(KEPT)


def test_check_reports_settings_that_are_not_a_positive_number(app_url: str,
                                                                tmp_path: Path) -> None:
    _build(app_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, app_url, KEEP)), Clock(NOW))
    findings = [f for f in check(rt.catalog, now=NOW).findings if f.code == "invalid-period"]
    rt.close()
    assert [(f.path, f.severity) for f in findings] == [
        ("datasets.messages.retention[0].keep", "warning")]
    assert findings[0].message.startswith("2 rows of 'workspaces'")  # zero, negative
    assert "default 90d" in findings[0].message


def test_an_infinite_setting_takes_the_default_on_sqlite(tmp_path: Path) -> None:
    """SQLite keeps a float overflow (`9e999`) as an infinite `real` above zero: no
    finite period, so the default (90 d), not `max` (365 d); `check` counts it."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    made = _build(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO workspaces VALUES ('infinite', 9e999, 'free')"))
        conn.execute(messages.insert(), [
            {"id": 1000 + age, "workspace_id": "infinite",
             "created_at": NOW - timedelta(days=age, hours=1)} for age in (89, 91)])
    engine.dispose()
    rt = Runtime.open(load_policy(_policy(tmp_path, url, KEEP)), Clock(NOW))
    findings = [f for f in check(rt.catalog, now=NOW).findings if f.code == "invalid-period"]
    result = execute(rt, build_plan(rt), batch_size=7)
    rt.close()
    assert result.ok, result.as_dict()
    assert findings[0].message.startswith("3 rows of 'workspaces'")  # zero, negative, inf
    due = {i for i, (ws, age) in made.items() if age > KEPT[ws]}
    assert _left(url) == (set(made) - due) | {1089}


def test_a_setting_column_that_is_not_a_number_is_a_schema_error(app_url: str,
                                                                  tmp_path: Path) -> None:
    _build(app_url)
    keep = {**KEEP, "from": "workspaces.plan"}
    rt = Runtime.open(load_policy(_policy(tmp_path, app_url, keep)), Clock(NOW))
    findings = [f for f in check(rt.catalog, now=NOW).findings if f.severity == "error"]
    rt.close()
    assert [f.path for f in findings] == ["datasets.messages.retention[0].keep.from"]
    assert "not a number" in findings[0].message


@pytest.mark.parametrize(("keep", "says"), [
    ({**KEEP, "from": "users.retention"}, "not a dataset 'messages' belongs_to"),
    ({**KEEP, "min": "400d"}, "min <= default <= max"),
    # a month is 28 to 31 days: 30d is below 1mo in a 31-day month
    ({**KEEP, "default": "30d", "min": "1mo"}, "in every month"),
    ({**KEEP, "max": "forever"}, "cannot be forever"),
    ({**KEEP, "from": "workspaces"}, "DATASET.COLUMN"),
    ({k: v for k, v in KEEP.items() if k != "max"}, "max"),
])
def test_bad_periods_from_data_are_policy_errors(tmp_path: Path, keep: dict[str, Any],
                                                 says: str) -> None:
    with pytest.raises(PolicyError) as raised:
        load_policy(_policy(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", keep))
    assert says in str(raised.value)
    assert "retention[0].keep" in (raised.value.path or "") + str(raised.value)


def test_the_published_sentence_says_who_sets_the_period_and_its_bounds(
        tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", KEEP))
    ds = policy.datasets["messages"]
    said = sentence(policy, "messages", ds, ds.retention[0])
    assert "customer-configurable: 7 days to 365 days, default 90 days" in said


def test_explain_splits_rows_by_their_own_periods(app_url: str, tmp_path: Path) -> None:
    """`plan --explain messages`: due and not yet, each row judged by its own period;
    no single cutoff is shown (there is one per workspace)."""
    from lethe.reports.explain import explain

    made = _build(app_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, app_url, KEEP)), Clock(NOW))
    told = explain(rt, "messages")
    rt.close()
    (line,) = told.lines
    by = {r.reason: r.rows for r in line.reasons}
    due = sum(age > KEPT[ws] for ws, age in made.values())
    assert by == {"due": due, "not-yet": len(made) - due}
    assert line.cutoff is None and "message_retention_days" in (line.keep or "")


def _tiered(tmp_path: Path, url: str, *, plan_column: str = "workspaces.plan") -> Path:
    """Free workspaces' messages 10 days; every other message 400 days."""
    return _policy(tmp_path, url, None, [
        {"when": {plan_column: "free"}, "keep": "10d", "after": "created_at"},
        {"keep": "400d", "after": "created_at"}])


def test_when_tests_a_parents_column_through_belongs_to(app_url: str,
                                                        tmp_path: Path) -> None:
    """`when: {workspaces.plan: free}`: the tier is the workspace's, not the message's.
    Only the `short` workspace is on the free plan here."""
    made = _build(app_url)
    engine = sa.create_engine(normalize_url(app_url))
    with engine.begin() as conn:
        conn.execute(workspaces.update().where(workspaces.c.id != "short").values(plan="paid"))
    engine.dispose()
    rt = Runtime.open(load_policy(_tiered(tmp_path, app_url)), Clock(NOW))
    result = execute(rt, build_plan(rt), batch_size=5)
    rt.close()
    assert result.ok, result.as_dict()
    due = {i for i, (ws, age) in made.items() if age > (10 if ws == "short" else 400)}
    assert _left(app_url) == set(made) - due
    assert {made[i][0] for i in due} == set(KEPT)  # 500 days old: every workspace's


def test_a_parent_column_that_is_missing_is_a_schema_error(app_url: str,
                                                           tmp_path: Path) -> None:
    _build(app_url)
    rt = Runtime.open(load_policy(_tiered(tmp_path, app_url, plan_column="workspaces.tier")),
                      Clock(NOW))
    findings = [f for f in check(rt.catalog, now=NOW).findings if f.severity == "error"]
    rt.close()
    assert [f.path for f in findings] == ["datasets.messages.retention[0].when.workspaces.tier"]


def test_a_when_on_a_dataset_that_is_not_a_parent_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as raised:
        load_policy(_tiered(tmp_path, f"sqlite:///{tmp_path / 'app.db'}",
                            plan_column="accounts.plan"))
    assert "'accounts' is not a dataset 'messages' belongs_to" in str(raised.value)


def test_the_page_says_whose_column_a_rule_tests(tmp_path: Path) -> None:
    policy = load_policy(_tiered(tmp_path, f"sqlite:///{tmp_path / 'app.db'}"))
    ds = policy.datasets["messages"]
    assert "of workspaces with plan free for 10 days" in sentence(policy, "messages", ds,
                                                                   ds.retention[0])


@pytest.mark.postgres
def test_a_recount_that_looks_parents_up_keeps_their_index(postgres_url: str,
                                                           tmp_path: Path) -> None:
    """After a mass delete a recount turns index scans off (dead index entries), but
    not for a condition that looks each row's parent up: without the parent's index
    that lookup is a scan of the parent per row (measured: 180 s instead of 0.1 s)."""
    from lethe.engine.steps import rule_aged
    from lethe.stores.base import Older
    from lethe.stores.sql import SqlStore

    _build(postgres_url)
    store = SqlStore("app", postgres_url)
    store._removed["messages"] = 10**9  # as after deleting most of the table
    seen: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda *args: seen.append(args[2]))
    policy = load_policy(_policy(tmp_path, postgres_url, KEEP))
    ds = policy.datasets["messages"]
    aged = rule_aged(policy, {"workspaces": "id", "messages": "id"}, ds, ds.retention[0], NOW)
    store.count("messages", aged)
    assert not any("enable_indexscan" in s for s in seen)
    store.count("messages", Older("created_at", NOW))
    assert any("enable_indexscan" in s for s in seen)
    store.close()
