"""Retention periods workspaces choose through the API (issue 22, item 2), on SQLite and
PostgreSQL: `keep: {default: 90d, min: 7d, max: 365d}` with no `from:`; a workspace's
choice, stored in the control store and audited, applies from the next plan or run.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from lethe import Clock, Runtime, build_plan, execute, load_policy
from lethe.commands.periods import retention_periods, set_retention_period
from lethe.errors import NotFound, PolicyError, UsageError
from lethe.reports.explain import explain
from tests.engine.test_periods_from_data import KEPT, NOW, _build, _left

BOUNDS = {"default": "90d", "min": "7d", "max": "365d"}
CHOSEN = {"short": "10d", "long": "2y", "tiny": "1d"}  # 2y and 1d: refused (bounds)


def _policy(tmp_path: Path, url: str, keep: Any = None, *, workspace: bool = True) -> Path:
    messages: dict[str, Any] = {"store": "app", "table": "messages", "class": "pii",
                                "retention": [{"keep": keep or BOUNDS,
                                               "after": "created_at"}]}
    if workspace:
        messages["workspace"] = "workspace_id"
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Acme", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}},
        "datasets": {
            "workspaces": {"store": "app", "table": "workspaces", "class": "operational",
                           "retention": [{"keep": "forever"}]},
            "messages": messages}}))
    return path


def test_each_workspace_keeps_its_chosen_period(app_url: str, tmp_path: Path) -> None:
    made = _build(app_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, app_url)), Clock(NOW))
    set_retention_period(rt, "short", "messages", "10d")
    set_retention_period(rt, "negative", "messages", "300d")
    for workspace, keep in (("long", "2y"), ("tiny", "1d")):
        with pytest.raises(UsageError, match="between 7d and 365d"):
            set_retention_period(rt, workspace, "messages", keep)
    kept = {ws: 90 for ws in KEPT} | {"short": 10, "negative": 300}
    due = {i for i, (ws, age) in made.items() if age > kept[ws]}
    plan = build_plan(rt)
    assert [a.rows for a in plan.actions if a.step.dataset == "messages"] == [len(due)]
    assert plan.as_dict()["chosen_periods"] == {"messages": {"10d": 1, "300d": 1}}
    (line,) = explain(rt, "messages").lines
    assert {r.reason: r.rows for r in line.reasons} == {"due": len(due),
                                                        "not-yet": len(made) - len(due)}
    result = execute(rt, plan, batch_size=6)
    entries = [e for e in rt.audit.entries() if e.action == "workspace.retention"]
    rt.close()
    assert result.ok, result.as_dict()
    assert _left(app_url) == set(made) - due
    assert [(e.target, json.loads(e.details)["keep"]) for e in entries] == [
        ("workspace:short", "10d"), ("workspace:negative", "300d")]


def test_a_choice_back_to_null_restores_the_default(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    made = _build(url)
    rt = Runtime.open(load_policy(_policy(tmp_path, url)), Clock(NOW))
    set_retention_period(rt, "short", "messages", "10d")
    assert [p.as_dict()["applies"] for p in retention_periods(rt, "short")] == ["10d"]
    set_retention_period(rt, "short", "messages", None)
    assert [p.as_dict() for p in retention_periods(rt, "short")] == [
        {"dataset": "messages", "keep": None, "applies": "90d", "default": "90d",
         "min": "7d", "max": "365d"}]
    plan = build_plan(rt)
    rt.close()
    assert [a.rows for a in plan.actions if a.step.dataset == "messages"] == [
        sum(age > 90 for _, age in made.values())]


def test_what_cannot_be_chosen_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    _build(url)
    rt = Runtime.open(load_policy(_policy(tmp_path, url)), Clock(NOW))
    with pytest.raises(NotFound):
        set_retention_period(rt, "short", "nothing", "30d")
    with pytest.raises(UsageError, match="no period a workspace may choose"):
        set_retention_period(rt, "short", "workspaces", "30d")
    with pytest.raises(UsageError, match="invalid duration"):
        set_retention_period(rt, "short", "messages", "30 days")
    rt.close()
    with pytest.raises(PolicyError, match="needs the dataset's `workspace:`"):
        load_policy(_policy(tmp_path, url, workspace=False))


def test_plan_says_which_periods_workspaces_chose(tmp_path: Path) -> None:
    """`lethe plan` (the command) names the chosen periods under its table."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'app.db'}"
    _build(url)
    policy = _policy(tmp_path, url)
    rt = Runtime.open(load_policy(policy), Clock(NOW))
    set_retention_period(rt, "short", "messages", "10d")
    set_retention_period(rt, "zero", "messages", "10d")
    rt.close()
    shown = subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                            "plan", "--policy", str(policy), "--now", NOW.isoformat()],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "periods workspaces chose: messages (10d: 2; the others: the default)" in \
        shown.stdout


def test_what_applies_is_the_choice_within_the_bounds_as_they_are_now(tmp_path: Path) -> None:
    """A choice stored before the bounds narrowed: the run and the API both apply (and
    say) the new maximum, not the stored choice; choosing again replaces the choice."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    made = _build(url)
    rt = Runtime.open(load_policy(_policy(tmp_path, url)), Clock(NOW))
    set_retention_period(rt, "short", "messages", "20d")
    set_retention_period(rt, "short", "messages", "300d")  # replaces
    rt.close()
    narrower = _policy(tmp_path, url, {**BOUNDS, "max": "200d"})
    rt = Runtime.open(load_policy(narrower), Clock(NOW))
    (chosen,) = retention_periods(rt, "short")
    plan = build_plan(rt)
    rt.close()
    assert (chosen.keep, chosen.applies) == ("300d", "200d")
    kept = {ws: 90 for ws in KEPT} | {"short": 200}
    assert [a.rows for a in plan.actions if a.step.dataset == "messages"] == [
        sum(age > kept[ws] for ws, age in made.values())]


def test_only_one_rule_of_a_dataset_lets_workspaces_choose(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    path = _policy(tmp_path, url)
    policy = yaml.safe_load(path.read_text())
    policy["datasets"]["messages"]["retention"] = [
        {"when": {"workspace_id": "short"}, "keep": BOUNDS, "after": "created_at"},
        {"keep": BOUNDS, "after": "created_at"}]
    path.write_text(yaml.safe_dump(policy))
    with pytest.raises(PolicyError, match="one rule per dataset"):
        load_policy(path)


@pytest.mark.postgres
def test_two_ids_for_one_workspace_keep_the_longer_period(postgres_url: str,
                                                          tmp_path: Path) -> None:
    """A UUID workspace column takes `AB…` and `ab…` for one value: a shorter choice under
    the other spelling never shortens the longer one (a row matching both keeps the
    longer period)."""
    import sqlalchemy as sa

    from lethe.stores.sql import normalize_url

    engine = sa.create_engine(normalize_url(postgres_url))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS messages"))
        conn.execute(sa.text("DROP TABLE IF EXISTS workspaces"))
        conn.execute(sa.text("CREATE TABLE workspaces (id uuid PRIMARY KEY)"))
        conn.execute(sa.text("CREATE TABLE messages (id int PRIMARY KEY, workspace_id uuid,"
                             " created_at timestamptz)"))
        conn.execute(sa.text("INSERT INTO messages VALUES (1, :w, :at), (2, :w, :old)"),
                     {"w": "0e9c2f4a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
                      "at": NOW - timedelta(days=100), "old": NOW - timedelta(days=400)})
    engine.dispose()
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url)), Clock(NOW))
    set_retention_period(rt, "0e9c2f4a-1b2c-4d5e-8f90-a1b2c3d4e5f6", "messages", "300d")
    set_retention_period(rt, "0E9C2F4A-1B2C-4D5E-8F90-A1B2C3D4E5F6", "messages", "10d")
    result = execute(rt, build_plan(rt))
    rt.close()
    assert result.ok, result.as_dict()
    assert _left(postgres_url) == {1}  # 100 days old: kept for 300; 400 days: gone
