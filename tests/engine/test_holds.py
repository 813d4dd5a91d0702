"""Legal holds always win, including a hold placed while a run is in progress."""

from __future__ import annotations

from pathlib import Path

import pytest

from lethe.clock import Clock
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.errors import NotFound, UsageError
from lethe.holds import parse_scope, place_hold
from tests.fixtures import (
    NOW,
    build_app,
    events,
    expected_event_ids,
    ids,
    profiles,
    runtime,
    sessions,
    users,
    write_policy,
)


def hold(policy: Path, **scope: str) -> int:
    rt = runtime(policy)
    try:
        return place_hold(rt.control, rt.audit, Clock(NOW), parse_scope(
            rt.policy, scope.get("subject"), scope.get("workspace"), scope.get("dataset")),
            "case 42")
    finally:
        rt.close()


def test_subject_hold_keeps_the_subject_and_everything_linked(app_url: str,
                                                              tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    hold(policy, subject="user:user6@example.com")  # by email
    hold(policy, subject="user:2")  # by id
    rt = runtime(policy)
    plan = build_plan(rt)
    held = {(a.step.dataset, a.step.action): a.held for a in plan.actions}
    assert held[("users", "purge")] == 1
    assert held[("users", "soft-delete")] == 1
    assert held[("sessions", "delete")] == 2  # the old sessions of users 2 and 6
    result = execute(rt, plan)
    rt.close()
    assert result.ok
    assert 6 in ids(engine, users)
    assert 2 in ids(engine, users, users.c.deleted_at.is_(None))
    assert {20, 21, 60, 61} <= ids(engine, sessions)
    assert ids(engine, profiles, profiles.c.bio == "[redacted]") == set()
    # everyone else still got their policy applied
    assert 10 not in ids(engine, sessions)
    assert ids(engine, users, users.c.deleted_at.is_not(None)) >= {1, 3, 4}


def test_workspace_hold_reaches_rows_through_their_parents(app_url: str,
                                                           tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    due_events = expected_event_ids(engine)
    hold(policy, workspace="ws_b")
    rt = runtime(policy)
    result = execute(rt, build_plan(rt))
    rt.close()
    assert result.ok
    assert 6 in ids(engine, users)  # ws_b user: its purge is held
    # sessions have no workspace column: held through their user
    assert {60, 70, 80, 90, 100} <= ids(engine, sessions)
    assert {10, 20, 30, 40, 50} & ids(engine, sessions) == set()
    remaining = ids(engine, events)
    ws_b = ids(engine, events, events.c.workspace_id == "ws_b")
    assert {e for e in due_events if e % 2 == 0} <= ws_b <= remaining
    assert {e for e in due_events if e % 2} & remaining == set()


def test_dataset_hold_on_a_child_blocks_the_parent_purge(app_url: str,
                                                         tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    before_sessions = ids(engine, sessions)
    hold(policy, dataset="sessions")
    rt = runtime(policy)
    plan = build_plan(rt)
    purge = next(a for a in plan.actions if a.step.action == "purge")
    assert (purge.rows, purge.held) == (0, 1)
    result = execute(rt, plan)
    rt.close()
    assert result.ok
    assert ids(engine, sessions) == before_sessions
    assert 6 in ids(engine, users)


def test_hold_placed_mid_run_is_honoured(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    due_events = expected_event_ids(engine)
    rt = runtime(policy)
    plan = build_plan(rt, ["events"])
    placed: list[int] = []
    before_hold: list[int] = []

    def place_after_first_deletions(index: int, rows: int) -> None:
        if not placed:
            before_hold.append(rows)
            if rows:
                placed.append(hold(policy, dataset="events"))

    result = execute(rt, plan, batch_size=5, progress=place_after_first_deletions)
    rt.close()
    assert placed
    done = sum(a.done for a in result.actions)
    assert 0 < done == sum(before_hold) <= 5  # only what committed before the hold
    assert len(ids(engine, events) & due_events) == len(due_events) - done
    assert result.ok  # held rows are not failures


def test_released_hold_lets_retention_resume(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    hold_id = hold(policy, dataset="sessions")
    rt = runtime(policy)
    execute(rt, build_plan(rt, ["sessions"]))
    assert 10 in ids(engine, sessions)
    released = rt.control.release_hold(hold_id, NOW, "tester", "case closed")
    assert (released.id, released.released_at, released.scope) == (hold_id, NOW,
                                                                   "dataset:sessions")
    with pytest.raises(NotFound):
        rt.control.release_hold(hold_id, NOW, "tester", None)
    execute(rt, build_plan(rt, ["sessions"]))
    rt.close()
    assert 10 not in ids(engine, sessions)


@pytest.mark.parametrize(("scope", "path"), [
    ({"subject": "nobody:1"}, "--subject"),
    ({"subject": "user"}, "--subject"),
    ({"dataset": "nope"}, "--dataset"),
    ({"workspace": " "}, "--workspace"),
    ({}, "hold"),
])
def test_bad_hold_scopes_are_usage_errors(scope: dict[str, str], path: str,
                                          tmp_path: Path, sqlite_url: str) -> None:
    policy = write_policy(tmp_path, sqlite_url)
    rt = runtime(policy)
    with pytest.raises(UsageError) as caught:
        parse_scope(rt.policy, scope.get("subject"), scope.get("workspace"),
                    scope.get("dataset"))
    rt.close()
    assert caught.value.path == path


def test_batches_read_the_holds_only_when_they_changed(app_url: str, tmp_path: Path) -> None:
    """A batch checks the holds' mark with one statement on the control store's own
    connection, not a SQLAlchemy transaction: a run of many batches reads the holds
    through SQLAlchemy once while nothing changes, and again after a hold is placed
    (which still binds from the next batch)."""
    import sqlalchemy as sa

    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    due_events = expected_event_ids(engine)
    hold(policy, dataset="sessions")  # a hold in force: the holds are not empty
    rt = runtime(policy)
    reads: list[str] = []
    sa.event.listen(rt.control.engine, "before_cursor_execute",
                    lambda *args: reads.append(args[2]) if "lethe_holds" in args[2] else None)
    placed: list[int] = []
    reads_before_placing: list[int] = []

    def place_midway(_index: int, rows: int) -> None:
        if rows and len(reads_before_placing) < 3:  # after three batches that took rows
            reads_before_placing.append(len(reads))
            if len(reads_before_placing) == 3:
                placed.append(hold(policy, dataset="events"))

    result = execute(rt, build_plan(rt, ["events"]), batch_size=2, progress=place_midway)
    rt.close()
    done = sum(a.done for a in result.actions if a.planned.step.dataset == "events")
    assert placed and 0 < done <= 3 * 2  # the hold bound from the fourth batch on
    # batches two and three read nothing; the placed hold was read (the mark, the holds)
    assert reads_before_placing[0] >= 1 and len(set(reads_before_placing)) == 1
    assert any("released_at IS NULL" in read for read in reads[reads_before_placing[0]:])
    assert len(ids(engine, events) & due_events) == len(due_events) - done


def test_a_hold_written_by_any_process_binds_at_the_next_batch(app_url: str,
                                                              tmp_path: Path) -> None:
    """The mark a batch checks is read from the holds table itself: a hold written there
    without lethe's API (a process of another lethe version, say), under the gate, binds
    from the next batch like any other."""
    from lethe.control.schema import holds as holds_table
    from lethe.holds import gate_of

    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    due_events = expected_event_ids(engine)
    rt = runtime(policy)
    placed: list[int] = []
    before_hold: list[int] = []

    def place_by_hand(_index: int, rows: int) -> None:
        if rows and not placed:
            before_hold.append(rows)
            with gate_of(rt.control.engine).exclusive(), rt.control.engine.begin() as conn:
                placed.append(int(conn.execute(holds_table.insert().values(
                    scope_kind="dataset", scope_value="events", subject_kind=None,
                    reason="case", placed_at=NOW, placed_by="by hand")
                    .returning(holds_table.c.id)).scalar_one()))

    result = execute(rt, build_plan(rt, ["events"]), batch_size=2, progress=place_by_hand)
    rt.close()
    done = sum(a.done for a in result.actions if a.planned.step.dataset == "events")
    assert placed and done == sum(before_hold) <= 2
    assert len(ids(engine, events) & due_events) == len(due_events) - done
