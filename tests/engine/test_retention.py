"""Retention semantics on real SQLite and PostgreSQL databases."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.errors import SchemaMismatch
from tests.fixtures import (
    NOW,
    RECOVER_FOR,
    analytics,
    build_app,
    events,
    expected_event_ids,
    ids,
    invoices,
    profiles,
    runtime,
    sessions,
    users,
    write_policy,
)


def snapshot(engine: sa.Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(sa.select(t)))
                for t in (users, sessions, invoices, profiles, events, analytics)}


def rows_by_step(plan_dict: dict[str, object]) -> dict[tuple[str, object, str], int]:
    return {(a["dataset"], a["rule"], a["action"]): a["rows"]  # type: ignore[index]
            for a in plan_dict["actions"]}  # type: ignore[attr-defined]


def test_plan_counts_due_rows_and_changes_nothing(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    before = snapshot(engine)
    rt = runtime(write_policy(tmp_path, app_url))
    plan = build_plan(rt).as_dict()
    rt.close()
    counts = rows_by_step(plan)
    assert counts[("users", 0, "soft-delete")] == 4
    assert counts[("users", None, "purge")] == 1
    assert counts[("sessions", 0, "delete")] == 10
    assert counts[("invoices", 0, "delete")] == 0
    assert counts[("analytics", 0, "anonymize")] == 25
    total_events = sum(v for (ds, _, _), v in counts.items() if ds == "events")
    assert total_events == len(expected_event_ids(engine))
    # the purge of user 6 cascades: its fresh session is deleted, its profile anonymized
    cascades = {(a["dataset"], a["parent"]): a["rows"] for a in plan["actions"]
                if a["action"] == "cascade"}
    assert cascades == {("sessions", "users"): 1, ("profiles", "users"): 1}
    assert snapshot(engine) == before


def test_run_enforces_every_rule(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    due_events = expected_event_ids(engine)
    all_events = ids(engine, events)
    rt = runtime(write_policy(tmp_path, app_url))
    result = execute(rt, build_plan(rt))
    rt.close()
    assert result.ok, result.as_dict()
    assert all(a.verified for a in result.actions)
    assert ids(engine, users) == set(range(1, 11)) - {6}
    assert ids(engine, users, users.c.deleted_at.is_not(None)) == {1, 2, 3, 4}
    # old sessions gone, fresh ones kept except the purged user's; NULL last_seen kept
    assert ids(engine, sessions) == {i * 10 + 1 for i in range(1, 11) if i != 6} | {999}
    assert ids(engine, invoices) == set(range(1, 11))  # retained: legal basis
    with engine.connect() as conn:
        profile = conn.execute(sa.select(profiles).where(profiles.c.id == 6)).one()
        untouched = conn.execute(sa.select(profiles).where(profiles.c.id == 5)).one()
        anon = conn.execute(sa.select(analytics).order_by(analytics.c.id)).all()
    assert (profile.bio, profile.phone, profile.user_id) == ("[redacted]", None, None)
    assert (untouched.bio, untouched.user_id) == ("bio 5", 5)
    assert ids(engine, events) == all_events - due_events
    for row in anon:
        if row.id % 2:
            assert row.ip is None and row.email.startswith("sha256:")
        else:
            assert row.ip == f"203.0.113.{row.id}" and row.email == f"a{row.id}@example.org"


def test_second_run_finds_nothing_and_changes_nothing(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    rt = runtime(write_policy(tmp_path, app_url))
    execute(rt, build_plan(rt))
    after_first = snapshot(engine)
    again = build_plan(rt)
    assert all(a.rows == 0 for a in again.actions)
    execute(rt, again)
    rt.close()
    assert snapshot(engine) == after_first


def test_tiny_batches_reach_the_same_state(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    rt = runtime(write_policy(tmp_path, app_url))
    result = execute(rt, build_plan(rt), batch_size=3)
    rt.close()
    small_state = snapshot(engine)
    assert max(a.batches for a in result.actions) >= 10
    engine = build_app(app_url)
    rt = runtime(write_policy(tmp_path, app_url))
    execute(rt, build_plan(rt), batch_size=10_000)
    rt.close()
    big_batches_state = snapshot(engine)
    assert small_state == big_batches_state


def test_soft_deleted_rows_are_purged_after_recovery_window(app_url: str,
                                                            tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    rt = runtime(policy)
    execute(rt, build_plan(rt))
    rt.close()
    assert {1, 2, 3, 4} <= ids(engine, users)  # recoverable for RECOVER_FOR
    rt = runtime(policy, NOW + RECOVER_FOR - timedelta(days=1))
    assert [a.rows for a in build_plan(rt).actions if a.step.action == "purge"] == [0]
    rt.close()
    rt = runtime(policy, NOW + RECOVER_FOR + timedelta(days=1))
    result = execute(rt, build_plan(rt))
    rt.close()
    assert result.ok
    assert ids(engine, users) & {1, 2, 3, 4} == set()
    assert ids(engine, invoices) == set(range(1, 11))  # retained
    assert ids(engine, profiles, profiles.c.bio == "[redacted]") == {1, 2, 3, 4, 6}


def test_unknown_column_stops_before_anything_changes(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    before = snapshot(engine)
    policy = write_policy(tmp_path, app_url,
                          datasets__sessions__retention=[{"keep": "1d", "after": "nope"}])
    rt = runtime(policy)
    with pytest.raises(SchemaMismatch) as caught:
        build_plan(rt)
    rt.close()
    assert caught.value.path == "datasets.sessions.retention[0].after"
    assert "nope" in caught.value.message
    assert snapshot(engine) == before


def test_unknown_table_is_named(app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    policy = write_policy(tmp_path, app_url, datasets__events__table="evnts")
    rt = runtime(policy)
    with pytest.raises(SchemaMismatch) as caught:
        build_plan(rt, ["events"])
    rt.close()
    assert caught.value.path == "datasets.events.table"


def test_dataset_filter_touches_only_that_dataset(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    before = snapshot(engine)
    rt = runtime(write_policy(tmp_path, app_url))
    result = execute(rt, build_plan(rt, ["sessions"]))
    rt.close()
    assert {a.planned.step.dataset for a in result.actions} == {"sessions"}
    after = snapshot(engine)
    assert after["users"] == before["users"] and after["events"] == before["events"]
    assert len(after["sessions"]) == len(before["sessions"]) - 10


def test_cascade_count_includes_children_with_null_timestamps(app_url: str,
                                                              tmp_path: Path) -> None:
    engine = build_app(app_url)
    with engine.begin() as conn:  # user 6 is being purged; give it a never-seen session
        conn.execute(sessions.insert().values(id=66, user_id=6, last_seen_at=None))
    rt = runtime(write_policy(tmp_path, app_url))
    plan = build_plan(rt)
    cascade = next(a for a in plan.actions
                   if a.step.action == "cascade" and a.step.dataset == "sessions")
    assert cascade.rows == 2  # the fresh session and the never-seen one
    result = execute(rt, plan)
    rt.close()
    done = next(a for a in result.actions
                if a.planned.step.action == "cascade" and a.planned.step.dataset == "sessions")
    assert done.done == 2 and done.verified
    assert 66 not in ids(engine, sessions)
