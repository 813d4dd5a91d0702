"""An erasure is a plan handed to the one executor: the plan is data, the executor carries
it out in its order and reports each action to the request's tally."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.engine.erasure_plan import (
    Erased,
    EraseRows,
    RemoveKeyed,
    ShredKeys,
    build_erasure_plan,
)
from lethe.engine.executor import Executor
from lethe.engine.plan import builder_for
from lethe.errors import LetheError
from lethe.holds import HoldScopes, parse_scope, place_hold
from lethe.stores.base import Value
from tests.fixtures import (
    build_app,
    ids,
    invoices,
    profiles,
    runtime,
    sessions,
    users,
    write_policy,
)


class Recorder:
    """A tally for one subject that writes down what the executor told it, in order."""

    def __init__(self, keys: Sequence[Value]) -> None:
        self.keys = list(keys)
        self.calls: list[tuple[str, str]] = []
        self.results: dict[str, Erased] = {}

    def column(self, dataset: str) -> str | None:
        return None

    def unheld(self, holds: HoldScopes) -> list[Value]:
        return self.keys

    def shredded(self, destroyed: Sequence[Value]) -> None:
        self.calls.append(("shredded", ""))

    def keys_of(self, dataset: str) -> Mapping[str, list[str]]:
        return {}

    def keys_removed(self, action: RemoveKeyed, removed: dict[str, int],
                     held: dict[str, int]) -> None:
        self.calls.append(("keys", action.dataset))

    def owners_of(self, dataset: str, holds: HoldScopes) -> Mapping[str, str]:
        return {}

    def begin(self, action: EraseRows) -> None:
        self.calls.append(("begin", action.dataset))

    def erased(self, action: EraseRows, result: Erased) -> None:
        self.calls.append(("erased", action.dataset))
        self.results[action.dataset] = result


def test_the_plan_names_every_dataset_children_first_by_its_erasure(
        app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    rt = runtime(write_policy(tmp_path, app_url))
    plan = build_erasure_plan(rt, builder_for(rt, rt.clock.now()), "user", [7])
    rt.close()
    rows = [a for a in plan.actions if isinstance(a, EraseRows)]
    assert [(a.dataset, a.action) for a in rows][-1] == ("users", "delete")
    assert {(a.dataset, a.action) for a in rows} == {
        ("sessions", "delete"), ("invoices", "retain"), ("profiles", "anonymize"),
        ("users", "delete")}
    assert not any(isinstance(a, ShredKeys | RemoveKeyed) for a in plan.actions)
    assert plan.as_dict()["subjects"] == 1
    assert [a["dataset"] for a in plan.as_dict()["actions"]] == [a.dataset for a in rows]


def test_the_executor_carries_the_plan_out_in_its_order(app_url: str, tmp_path: Path) -> None:
    app = build_app(app_url)
    rt = runtime(write_policy(tmp_path, app_url))
    executor = Executor(rt, builder_for(rt, rt.clock.now()))
    plan = build_erasure_plan(rt, executor.builder, "user", [7])
    tally = Recorder([7])
    executor.erase(plan, tally, batch_size=1)
    rt.close()
    expected = [(step, a.dataset) for a in plan.actions if isinstance(a, EraseRows)
                for step in ("begin", "erased")]
    assert tally.calls == expected
    swept = tally.results["sessions"].swept
    assert swept is not None and (swept.rows, swept.batches) == (2, 2)
    assert ids(app, sessions, sessions.c.user_id == 7) == set()
    assert 7 not in ids(app, users)
    assert ids(app, invoices, invoices.c.user_id == 7) == {7}  # erasure: retain
    with app.connect() as conn:
        bio = conn.execute(sa.select(profiles.c.bio).where(profiles.c.id == 7)).scalar_one()
    assert bio != "bio 7"


def test_a_hold_keeps_what_the_plan_covers(app_url: str, tmp_path: Path) -> None:
    app = build_app(app_url)
    rt = runtime(write_policy(tmp_path, app_url))
    place_hold(rt.control, rt.audit, rt.clock,
               parse_scope(rt.policy, None, None, "sessions"), "case 9")
    executor = Executor(rt, builder_for(rt, rt.clock.now()))
    tally = Recorder([7])
    executor.erase(build_erasure_plan(rt, executor.builder, "user", [7]), tally, 100)
    rt.close()
    assert ids(app, sessions, sessions.c.user_id == 7) == {70, 71}
    assert 7 in ids(app, users)  # its sessions still point at it
    assert tally.results["sessions"].held != tally.results["invoices"].held


def test_archived_rows_that_cannot_be_traced_stop_the_plan_before_anything_goes(
        app_url: str, tmp_path: Path) -> None:
    app = build_app(app_url)
    policy = write_policy(tmp_path, app_url, datasets__events__retention=[
        {"keep": "30d", "after": "received_at", "action": "archive", "to": "cold"}],
        datasets__events__belongs_to={"sessions": "id", "profiles": "id"},
        stores__cold={"url": f"file://{tmp_path / 'cold'}"})
    rt = runtime(policy)
    with pytest.raises(LetheError, match="cannot be traced"):
        build_erasure_plan(rt, builder_for(rt, rt.clock.now()), "user", [7])
    rt.close()
    assert 7 in ids(app, users)
