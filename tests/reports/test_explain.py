"""`plan --explain` (issue 22, item 4): why each row is due or stays, from the same
conditions the plan and the run use — checked against counts made here in Python from
the fixture's own data, against the plan, and after a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.holds import Scope, parse_scope, place_hold
from lethe.reports.explain import Explanation, RuleLine, explain
from tests.fixtures import build_app, days_ago, runtime, write_policy

STATUSES = ["processed", "failed", "pending", "queued", None, "other"]
AGES = [1, 20, 60, 120]


@pytest.fixture
def policy(app_url: str, tmp_path: Path) -> Path:
    build_app(app_url)
    return write_policy(tmp_path, app_url)


def reasons(line: RuleLine) -> dict[str, int]:
    return {r.reason: r.rows for r in line.reasons}


def rule(told: Explanation, index: int | None, action: str | None = None) -> RuleLine:
    return next(line for line in told.lines if line.step.rule == index
                and line.step.parent is None and (action is None or line.step.action == action))


def event(i: int) -> tuple[str | None, int | None]:
    """An event's status and age in days (None: no time), as build_app makes it."""
    return STATUSES[i % 6], (AGES[i % 4] if i % 13 else None)


def expected_events(keep_days: int, statuses: set[str],
                    ids: range = range(1, 241)) -> dict[str, int]:
    found = {"due": 0, "not-yet": 0, "after-null": 0}
    for i in ids:
        status, age = event(i)
        if status not in statuses:
            continue
        key = "after-null" if age is None else ("due" if age > keep_days else "not-yet")
        found[key] += 1
    return found


def test_each_rule_of_a_dataset_splits_its_rows_by_why(policy: Path) -> None:
    rt = runtime(policy)
    try:
        told = explain(rt, "events")
    finally:
        rt.close()
    assert told.rows == 240
    assert reasons(rule(told, 0)) == {k: v for k, v in expected_events(
        90, {"processed"}).items() if v or k == "due"}
    assert reasons(rule(told, 1)) == {k: v for k, v in expected_events(
        30, {"failed"}).items() if v or k == "due"}
    assert reasons(rule(told, 2)) == {k: v for k, v in expected_events(
        7, {"pending", "queued"}).items() if v or k == "due"}
    assert told.no_rule == sum(event(i)[0] in (None, "other") for i in range(1, 241))
    assert rule(told, 0).cutoff == days_ago(90)
    # every row is in exactly one line's reasons or in no_rule
    assert sum(sum(reasons(line).values()) for line in told.lines) + told.no_rule == 240


def test_the_oldest_waiting_row_and_when_it_becomes_due(policy: Path) -> None:
    rt = runtime(policy)
    try:
        line = rule(explain(rt, "events"), 0)
    finally:
        rt.close()
    assert line.oldest_waiting == days_ago(60)  # processed rows 60 days old wait longest
    assert line.due_from == days_ago(60 - 90)


def test_explain_agrees_with_the_plan_on_every_step(policy: Path) -> None:
    rt = runtime(policy)
    try:
        place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, "user:1", None, None),
                   "case 7")
        planned = {(a.step.dataset, a.step.rule, a.step.action, a.step.parent): a
                   for a in build_plan(rt).actions}
        for name in ("users", "sessions", "invoices", "events", "analytics"):
            for line in explain(rt, name).lines:
                step = line.step
                action = planned[(step.dataset, step.rule, step.action, step.parent)]
                found = reasons(line)
                assert found.get("due", 0) == action.rows, step
                assert found.get("held", 0) == action.held, step
                assert found.get("blocked", 0) == action.blocked, step
    finally:
        rt.close()


def test_a_hold_is_named_with_the_rows_it_keeps(policy: Path) -> None:
    rt = runtime(policy)
    try:
        hold = place_hold(rt.control, rt.audit, rt.clock,
                          parse_scope(rt.policy, "user:2", None, None), "case 8")
        told = explain(rt, "sessions")
        line = rule(told, 0)
        held = next(r for r in line.reasons if r.reason == "held")
        assert held.rows == 1  # user 2's 60-day-old session
        assert held.by == ((f"hold {hold} (subject)", 1),)
        assert reasons(line)["due"] == 9  # the other nine users' old sessions
        mine = explain(rt, "sessions", Scope("subject", "user2@example.com", "user"))
    finally:
        rt.close()
    assert mine.rows == 2 and mine.scope == {"subject": "user"}
    assert reasons(rule(mine, 0)) == {"due": 0, "held": 1, "not-yet": 1}


def test_a_workspace_narrows_the_rows(policy: Path) -> None:
    rt = runtime(policy)
    try:
        told = explain(rt, "events", Scope("workspace", "ws_a"))
    finally:
        rt.close()
    odd = range(1, 241, 2)  # build_app puts odd events in ws_a
    assert told.rows == len(odd)
    assert reasons(rule(told, 1)) == {k: v for k, v in expected_events(
        30, {"failed"}, odd).items() if v or k == "due"}


def test_after_a_run_old_rows_are_done_not_due(policy: Path) -> None:
    rt = runtime(policy)
    try:
        before = reasons(rule(explain(rt, "analytics"), 0))
        execute(rt, build_plan(rt, ["analytics"]))
        after = reasons(rule(explain(rt, "analytics"), 0))
    finally:
        rt.close()
    assert before == {"due": 25, "not-yet": 25}  # odd ids are 500 days old, even 100
    assert after == {"due": 0, "not-yet": 25, "done": 25}  # anonymized: nothing left to do


def test_a_null_time_never_starts_the_period(policy: Path) -> None:
    rt = runtime(policy)
    try:
        line = rule(explain(rt, "sessions"), 0)
    finally:
        rt.close()
    assert reasons(line)["after-null"] == 1  # session 999 has no last_seen_at


def lethe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                           *args], capture_output=True, text=True, timeout=120)


def test_the_command_prints_reasons_and_never_the_subjects_key(policy: Path) -> None:
    base = ("--policy", str(policy), "--now", "2026-06-01T00:00:00Z")
    shown = lethe("plan", "--explain", "sessions", "--subject", "user:user3@example.com",
                  "--json", *base)
    assert shown.returncode == 0, shown.stderr
    assert "user3@example.com" not in shown.stdout + shown.stderr
    data: dict[str, Any] = json.loads(shown.stdout)
    assert data["rows"] == 2 and data["scope"] == {"subject": "user"}
    assert {r["reason"]: r["rows"] for r in data["rules"][-1]["reasons"]} == {
        "due": 1, "not-yet": 1}
    human = lethe("plan", "--explain", "events", *base)
    assert human.returncode == 0, human.stderr
    assert "rule 1: delete 30d after received_at" in human.stdout
    assert "not-yet:" in human.stdout and "no rule:" in human.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("--explain", "events", "--subject", "user:1"), "does not belong to a user"),
    (("--explain", "nope"), "unknown dataset"),
    (("--subject", "user:1"), "--subject and --workspace narrow --explain"),
    (("--explain", "sessions", "--workspace", "ws_a"), "has no workspace column"),
])
def test_bad_explain_arguments_are_one_line_errors(policy: Path, args: tuple[str, ...],
                                                   message: str) -> None:
    done = lethe("plan", *args, "--policy", str(policy))
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1


def test_soft_deleted_rows_are_the_purges_not_no_rule(app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    policy = write_policy(tmp_path, app_url, datasets__users__retention=[])
    rt = runtime(policy)
    try:
        told = explain(rt, "users")
    finally:
        rt.close()
    purge = rule(told, None, "purge")
    assert sum(reasons(purge).values()) == 1  # user 6, soft-deleted 40 days ago
    assert told.no_rule == 9  # the live ones: no rule applies to them
    assert told.rows == told.no_rule + sum(reasons(purge).values())
    assert "live rows" in told.notes[0]
