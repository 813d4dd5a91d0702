"""A bulk run makes the next group ready (its subjects found, counted and moved into in
progress with their baselines) on a thread of its own while it erases the group before
(`Ahead`, `Erasure.begin`): holds placed after a group was made ready still win, a store
error while making it ready is met again when it erases, and every request ends as a
run without the thread would leave it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lethe.errors import LetheError
from lethe.holds import parse_scope, place_hold
from lethe.requests import phases
from lethe.requests.ahead import Ahead
from lethe.requests.erasure import Group
from lethe.requests.records import requests_of
from lethe.requests.service import open_many, run_many, stored_certificate
from tests.fixtures import runtime
from tests.requests.test_bulk import people_and_orders
from tests.requests.test_bulk_pipeline import run_people

PEOPLE = range(1, 8)


def _orders_of(engine: sa.Engine, person: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM orders WHERE person_id = :p"),
                                {"p": person}).scalar_one())


def test_ahead_makes_one_item_ahead_in_order_and_tells_what_failed() -> None:
    started: list[int] = []
    gate, two_started = threading.Event(), threading.Event()

    def make(item: int) -> int:
        started.append(item)
        if item == 2:
            two_started.set()
            gate.wait(10)  # held until the caller has taken item 1
        if item == 3:
            raise LetheError("item 3 failed", path="ready")
        return item * 10

    made: list[int] = []
    with pytest.raises(LetheError, match="item 3"), Ahead([1, 2, 3, 4], make) as ahead:
        for value in ahead:
            made.append(value)
            if value == 10:
                assert two_started.wait(10)  # the next one is under way, no further
                assert started == [1, 2]
                gate.set()
    assert made == [10, 20]
    assert started == [1, 2, 3]  # nothing made after the failure
    with Ahead([], make) as nothing:
        assert list(nothing) == []


def test_the_next_group_is_made_ready_while_this_one_erases(
        app_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, path, _ = people_and_orders(app_url, tmp_path, PEOPLE)
    begun: list[tuple[str, list[int]]] = []
    second_begun = threading.Event()
    begin, run = Group.begin_erasure, phases.Erasure.run

    def recorded_begin(group: Group) -> None:
        if group._begun:  # (erase asks again; a no-op once begun)
            return begin(group)
        begin(group)
        begun.append((threading.current_thread().name, [s.record.id for s in group.subjects]))
        if len(begun) == 2:
            second_begun.set()

    waited: list[bool] = []

    def first_waits(erasure: Any, *args: Any, **kwargs: Any) -> None:
        if not waited:  # the first group's erasure: the second is made ready meanwhile
            waited.append(second_begun.wait(10))
        run(erasure, *args, **kwargs)

    monkeypatch.setattr(Group, "begin_erasure", recorded_begin)
    monkeypatch.setattr(phases.Erasure, "run", first_waits)
    rt = runtime(path)
    try:
        records, outcomes = run_people(rt, tmp_path / "out")
    finally:
        rt.close()
    assert waited == [True]
    assert [ids for _, ids in begun] == [[r.id for r in records[i:i + 3]] for i in (0, 3, 6)]
    assert all(name.startswith("lethe-ready") for name, _ in begun)
    assert all(o.record.status == "completed" and o.certified for o in outcomes)
    assert all(_orders_of(engine, p) == 0 for p in PEOPLE)
    engine.dispose()


def test_a_hold_placed_after_its_group_was_made_ready_still_wins(
        app_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Person 5's group is counted and in progress before its erasure starts; a hold on
    person 5 placed then keeps every one of its rows and its request open."""
    engine, path, _ = people_and_orders(app_url, tmp_path, PEOPLE)
    run = phases.Erasure.run
    rt = runtime(path)
    placed: list[int] = []

    def hold_then_run(erasure: Any, *args: Any, **kwargs: Any) -> None:
        ids = [s.record.id for g in erasure.groups for s in g.subjects]
        if records[4].id in ids and not placed:
            # made ready already: in progress, with its baselines stored
            assert requests_of(rt).get(records[4].id).status == "in_progress"
            assert requests_of(rt).baselines([records[4].id])[records[4].id]["orders"] == 5
            placed.append(place_hold(rt.control, rt.audit, rt.clock,
                                     parse_scope(rt.policy, "person:p5@example.com", None,
                                                 None), "case 5"))
        run(erasure, *args, **kwargs)

    monkeypatch.setattr(phases.Erasure, "run", hold_then_run)
    try:
        records = open_many(rt, "erasure", "person",
                            [[f"email=p{p}@example.com"] for p in PEOPLE])
        outcomes = run_many(rt, [r.id for r in records], tmp_path / "out", group_size=3)
        assert rt.audit.verify().ok
        held = outcomes[4]
        assert placed and held.record.status == "in_progress" and not held.certified
        assert stored_certificate(rt, records[4].id) is None
        assert held.datasets["orders"].held == 5
        assert f"hold {placed[0]}" in (held.record.note or "")
    finally:
        rt.close()
    assert _orders_of(engine, 5) == 5
    assert all(_orders_of(engine, p) == 0 for p in PEOPLE if p != 5)
    assert all(o.record.status == "completed" for i, o in enumerate(outcomes) if i != 4)
    engine.dispose()


def test_a_store_error_while_made_ready_is_met_again_when_it_erases(
        app_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting fails on the ready thread once: the group begins again when it erases
    (and counts then), so every request still completes with its full counts."""
    engine, path, _ = people_and_orders(app_url, tmp_path, PEOPLE)
    baselines = Group._baselines
    failed: list[str] = []

    def fails_once(group: Group) -> Any:
        if not failed:
            failed.append(threading.current_thread().name)
            raise LetheError("the store went away while counting", path="stores.app")
        return baselines(group)

    monkeypatch.setattr(Group, "_baselines", fails_once)
    rt = runtime(path)
    try:
        _, outcomes = run_people(rt, tmp_path / "out")
        assert failed and failed[0].startswith("lethe-ready")
        assert all(o.record.status == "completed" and o.certified for o in outcomes)
        assert [o.datasets["orders"].erased for o in outcomes] == list(PEOPLE)
    finally:
        rt.close()
    assert all(_orders_of(engine, p) == 0 for p in PEOPLE)
    engine.dispose()
