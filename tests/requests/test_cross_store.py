"""A subject whose data spans two stores: retention, holds and requests follow the links."""

from __future__ import annotations

import json
import zipfile
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml

from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.holds import parse_scope, place_hold
from lethe.requests.service import open_request, run_request
from tests.fixtures import NOW, POLICY, build_app, days_ago, ids, runtime, users

events_meta = sa.MetaData()
user_events = sa.Table(
    "user_events", events_meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.Integer, index=True),
    sa.Column("kind", sa.String(40)),
    sa.Column("at", sa.DateTime(timezone=True)),
)


def two_stores(app_url: str, tmp_path: Path) -> tuple[sa.Engine, sa.Engine, Path]:
    app = build_app(app_url)
    events_url = f"sqlite:///{tmp_path / 'events.db'}"
    events = sa.create_engine(events_url)
    events_meta.create_all(events)
    with events.begin() as conn:
        conn.execute(user_events.insert(), [
            {"id": u * 10 + k, "user_id": u, "kind": "click", "at": days_ago(1)}
            for u in range(1, 11) for k in range(3)])
    policy = yaml.safe_load(yaml.safe_dump(POLICY))
    policy["stores"]["app"]["url"] = app_url
    policy["stores"]["events"] = {"url": events_url}
    policy["datasets"]["user_events"] = {
        "store": "events", "table": "user_events", "class": "behavioral",
        "belongs_to": {"users": "user_id"},
        "retention": [{"keep": "90d", "after": "at"}]}
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return app, events, path


def test_purge_reaches_children_in_another_store(app_url: str, tmp_path: Path) -> None:
    app, events, policy = two_stores(app_url, tmp_path)
    rt = runtime(policy)
    plan = build_plan(rt)
    cascade = next(a for a in plan.actions
                   if a.step.dataset == "user_events" and a.step.action == "cascade")
    assert (cascade.rows, cascade.step.parent) == (3, "users")  # user 6 is purged
    result = execute(rt, plan)
    rt.close()
    assert result.ok, result.as_dict()
    assert ids(events, user_events, user_events.c.user_id == 6) == set()
    assert len(ids(events, user_events)) == 27
    assert 6 not in ids(app, users)


def test_a_subject_hold_reaches_across_stores(app_url: str, tmp_path: Path) -> None:
    app, events, policy = two_stores(app_url, tmp_path)
    rt = runtime(policy)
    place_hold(rt.control, rt.audit, rt.clock,
               parse_scope(rt.policy, "user:user6@example.com", None, None), "case 4")
    plan = build_plan(rt)
    cascade = next(a for a in plan.actions
                   if a.step.dataset == "user_events" and a.step.action == "cascade")
    assert cascade.rows == 0
    execute(rt, plan)
    rt.close()
    assert ids(events, user_events, user_events.c.user_id == 6) == {60, 61, 62}
    assert 6 in ids(app, users)


def test_access_and_erasure_cover_both_stores(app_url: str, tmp_path: Path) -> None:
    app, events, policy = two_stores(app_url, tmp_path)
    rt = runtime(policy)
    access = run_request(rt, open_request(rt, "access", "user", ["id=7"]).id, tmp_path / "o")
    assert access.export is not None
    with zipfile.ZipFile(access.export) as archive:
        rows = json.loads(archive.read("user_events.json"))
    assert sorted(r["id"] for r in rows) == [70, 71, 72]
    erasure = open_request(rt, "erasure", "user", ["id=7"])
    run_request(rt, erasure.id, tmp_path / "o")
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=31))
    done = run_request(rt, erasure.id, tmp_path / "o")
    rt.close()
    assert done.record.status == "completed"
    assert done.as_dict()["datasets"]["user_events"] == {
        "rows": 3, "erased": 3, "retained": 0, "held": 0}
    assert ids(events, user_events, user_events.c.user_id == 7) == set()
    assert 7 not in ids(app, users)
