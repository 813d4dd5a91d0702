"""Periods from data read once per plan or run (issue 22, item 5): on PostgreSQL, with a
dense integer parent key, each parent's period is read when the plan is made and each
row finds it by an array subscript instead of a lookup per row. The rows deleted are
exactly those the per-row lookup deletes: clamped settings, invalid ones (the default),
rows with no parent or a parent outside the array (looked up), and a parent added after
the periods were read (looked up)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from lethe import Clock, Runtime, build_plan, execute, load_policy
from lethe.engine.plan import builder_for
from lethe.engine.steps import Step
from lethe.stores.sql import compile as compile_module
from lethe.stores.sql import normalize_url
from tests.engine.test_periods_from_data import KEEP, _policy

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 6, 1, tzinfo=UTC)
AGES = (5, 8, 20, 100, 370, 500)
# workspace id -> setting (days); 4 is added only after the plan is made
SETTINGS: dict[int, Any] = {1: 10, 2: 400, 3: None, 5: 0, 6: 1, 7: -30, 8: 2.5}
LATE = {4: 30}
# workspace id -> days its messages are kept (None: no link; 99: no such workspace)
KEPT: dict[int | None, float] = {1: 10, 2: 365, 3: 90, 5: 90, 6: 7, 7: 90, 8: 7, 4: 30,
                                 None: 90, 99: 90}


def _build(url: str) -> dict[int, tuple[int | None, int]]:
    engine = sa.create_engine(normalize_url(url))
    made: dict[int, tuple[int | None, int]] = {}
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS messages, workspaces"))
        conn.execute(sa.text("CREATE TABLE workspaces (id bigint PRIMARY KEY,"
                             " message_retention_days numeric)"))
        conn.execute(sa.text("CREATE TABLE messages (id int PRIMARY KEY,"
                             " workspace_id bigint, created_at timestamptz)"))
        conn.execute(sa.text("INSERT INTO workspaces VALUES (:i, :d)"),
                     [{"i": i, "d": d} for i, d in SETTINGS.items()])
        for ws in KEPT:
            for age in AGES:
                made[len(made) + 1] = (ws, age)
        conn.execute(sa.text("INSERT INTO messages VALUES (:i, :w, :t)"), [
            {"i": i, "w": ws, "t": NOW - timedelta(days=age, hours=1)}
            for i, (ws, age) in made.items()])
    engine.dispose()
    return made


def test_periods_read_once_delete_exactly_what_the_per_row_lookup_deletes(
        postgres_url: str, tmp_path: Path) -> None:
    made = _build(postgres_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, KEEP)), Clock(NOW))
    assert builder_for(rt, NOW).known == {}  # an erasure's or a hold's: not read
    builder = builder_for(rt, NOW, periods=True)
    first, periods = builder.known[("messages", 0)]
    assert first == 1 and len(periods) == 8  # keys 1..8, 4 not there yet
    assert periods[0] == 10 * 86_400 and periods[1] == 365 * 86_400  # clamped
    assert periods[3] == 0  # no such workspace (yet): looked up per row
    # NULL, zero, negative: the default, as the lookup gives it (not looked up again)
    assert periods[2] == periods[4] == periods[6] == 90 * 86_400
    assert periods[7] == 7 * 86_400  # 2.5 days: up to the minimum
    sql = rt.catalog.store_of("messages").inner.compile(  # type: ignore[attr-defined]
        builder.due(Step("messages", 0, "delete")), "messages")
    text = str(sql.compile(dialect=postgresql.dialect()))
    assert ")s[CAST(messages.workspace_id" in text  # one bound array, subscripted
    plan = build_plan(rt)
    engine = sa.create_engine(normalize_url(postgres_url))
    with engine.begin() as conn:  # a workspace added after the periods were read
        conn.execute(sa.text("INSERT INTO workspaces VALUES (:i, :d)"),
                     [{"i": i, "d": d} for i, d in LATE.items()])
    result = execute(rt, plan, batch_size=7)
    rt.close()
    assert result.ok, result.as_dict()
    due = {i for i, (ws, age) in made.items() if age > KEPT[ws]}
    with engine.connect() as conn:
        left = set(conn.execute(sa.text("SELECT id FROM messages")).scalars())
    engine.dispose()
    assert left == set(made) - due
    assert {made[i][0] for i in due} == set(KEPT)  # every kind of setting decided some


def test_sparse_or_text_keys_are_looked_up_per_row(postgres_url: str, tmp_path: Path) -> None:
    _build(postgres_url)
    engine = sa.create_engine(normalize_url(postgres_url))
    with engine.begin() as conn:  # one far key: the range is 10^9 for 8 parents
        conn.execute(sa.text("INSERT INTO workspaces VALUES (1000000000, 30)"))
    engine.dispose()
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, KEEP)), Clock(NOW))
    assert builder_for(rt, NOW, periods=True).known == {}
    rt.close()


def _setup(url: str, tmp_path: Path, setting: str, key: str, link: str,
           parents: dict[int, str | None],
           children: list[tuple[int | None, datetime]]) -> Runtime:
    """workspaces(id KEY, s SETTING) and messages(workspace_id LINK, created_at)."""
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS messages, workspaces"))
        conn.execute(sa.text(f"CREATE TABLE workspaces (id {key} PRIMARY KEY, s {setting})"))
        conn.execute(sa.text(f"CREATE TABLE messages (id int PRIMARY KEY, workspace_id {link},"
                             " created_at timestamptz)"))
        for k, v in parents.items():
            conn.execute(sa.text(f"INSERT INTO workspaces VALUES (:k, CAST(:v AS {setting}))"),
                         {"k": k, "v": v})
        for i, (w, t) in enumerate(children, 1):
            conn.execute(sa.text("INSERT INTO messages VALUES (:i, :w, :t)"),
                         {"i": i, "w": w, "t": t})
    engine.dispose()
    path = _policy(tmp_path, url, {"from": "workspaces.s", "default": "90d", "min": "1d",
                                   "max": "3650d"})
    return Runtime.open(load_policy(path), Clock(NOW))


def _due(rt: Runtime) -> tuple[int, int]:
    """(rows due with the periods read once, rows due looked up per row)."""
    builder = builder_for(rt, NOW, periods=True)
    store = rt.catalog.store_of("messages")
    step = Step("messages", 0, "delete")
    return (store.count("messages", builder.due(step)),
            store.count("messages", replace(builder, known={}).due(step)))


@pytest.mark.parametrize(("setting", "key", "link", "parents", "children"), [
    # a `real` 30.1 is 30.100000381...: a row 10 ms younger than that period stays
    ("real", "int", "int", {1: "30.1", 2: "5"},
     [(1, NOW - timedelta(seconds=30.100000381469727 * 86_400 - 0.01))]),
    # rows a microsecond either side of a cutoff that is no whole microsecond (30.1 and
    # 12.345678 days in float seconds): the parent's cutoff read once, as a timestamptz,
    # rounds as PostgreSQL's to_timestamp(now - period) does
    # (1.000000000002 days is 86,400.0000001728 s: the cutoff rounds up, not down)
    ("numeric", "int", "int", {1: "30.1", 2: "12.345678", 3: "1.000000000002"},
     [(w, NOW - timedelta(seconds=days * 86_400) + timedelta(microseconds=k))
      for w, days in ((1, 30.1), (2, 12.345678), (3, 1.000000000002))
      for k in range(-2, 3)]),
    # NaN is no number: the default, as in SQL (and the plan does not fail)
    ("numeric", "int", "int", {1: "NaN", 2: "5", 3: "10"},
     [(1, NOW - timedelta(days=91)), (1, NOW - timedelta(days=89))]),
    # an `integer` link, keys with no parent past 2^31 (listed as bigint, not cast)
    ("int", "bigint", "int", {2**31 - 3: "5", 2**31 + 1: "50"},
     [(2**31 - 3, NOW - timedelta(days=10)), (2**31 - 3, NOW - timedelta(days=1))]),
    # an `integer` link, parent keys past 2^31
    ("int", "bigint", "int", {2**31 - 3 + i: "5" for i in range(6)},
     [(2**31 - 3, NOW - timedelta(days=10)), (2**31 - 2, NOW - timedelta(days=1))]),
    # negative keys, keys past 2^32, rows whose parent is outside the array or missing
    *[("numeric", "bigint", "bigint",
       {base + i: v for i, v in enumerate(["3", None, "0", "400", "2.5", "-1", "30"])},
       [(w, NOW - timedelta(days=d, hours=1))
        for w in [*(base + i for i in range(7)), None, base - 1, base + 99]
        for d in (1, 2, 3, 5, 29, 31, 89, 91, 399, 401)])
      for base in (-5, 5_000_000_000)],
])
def test_periods_read_once_agree_with_the_lookup_whatever_the_types(
        postgres_url: str, tmp_path: Path, setting: str, key: str, link: str,
        parents: dict[int, str | None],
        children: list[tuple[int | None, datetime]]) -> None:
    rt = _setup(postgres_url, tmp_path, setting, key, link, parents, children)
    try:
        assert ("messages", 0) in builder_for(rt, NOW, periods=True).known
        fast, slow = _due(rt)
    finally:
        rt.close()
    assert fast == slow


def test_nan_and_infinite_settings_take_the_default_in_sql_as_in_the_plan(
        postgres_url: str, tmp_path: Path) -> None:
    """PostgreSQL orders NaN above every number (`NaN > 0`), so a NaN setting was once
    clamped to the maximum by the per-row lookup; it is no number: the default (90 d)."""
    rt = _setup(postgres_url, tmp_path, "numeric", "int", "int",
                {1: "NaN", 2: "Infinity", 3: "-Infinity", 4: "5"},
                [(w, NOW - timedelta(days=d)) for w in (1, 2, 3) for d in (89, 91)])
    try:
        builder = builder_for(rt, NOW, periods=True)
        first, periods = builder.known[("messages", 0)]
        assert first == 1 and periods[:3] == (90 * 86_400,) * 3
        fast, slow = _due(rt)
    finally:
        rt.close()
    assert fast == slow == 3  # the 91-day-old row of each


@pytest.mark.parametrize("listed", [True, False])
def test_a_count_with_every_parent_known_looks_nothing_up(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        listed: bool) -> None:
    """A correlated lookup per row keeps PostgreSQL's scan to one process; with every
    row's parent known when the plan was made, the count needs none. A row whose parent
    came later is still counted by its lookup (found by the keys with no parent, listed,
    or beyond a number of them, by the array)."""
    if not listed:
        monkeypatch.setattr(compile_module, "MOST_MISSING_PROBED", 0)
    made = _build(postgres_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, KEEP)), Clock(NOW))
    store = rt.catalog.store_of("messages")
    step = Step("messages", 0, "delete")
    counts: list[str] = []
    engine = store.inner.engine  # type: ignore[attr-defined]

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT") and "FROM messages" in statement:
            counts.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        known = builder_for(rt, NOW, periods=True)
        with engine.begin() as conn:  # rows whose workspace is not there yet, gone
            conn.execute(sa.text("DELETE FROM messages WHERE workspace_id IN (4, 99)"))
        due = sum(1 for ws, age in made.values() if ws not in (4, 99) and age > KEPT[ws])
        assert store.count("messages", known.due(step)) == due
        assert len(counts) == 2 and not any("workspaces" in c for c in counts)
        counts.clear()
        with engine.begin() as conn:  # a workspace the plan did not know, with a due row
            conn.execute(sa.text("INSERT INTO workspaces VALUES (4, 30)"))
            conn.execute(sa.text("INSERT INTO messages VALUES (1000, 4, :t)"),
                         {"t": NOW - timedelta(days=31)})
        assert store.count("messages", known.due(step)) == due + 1
        assert len(counts) == 2 and "workspaces" in counts[1]  # the full count, looked up
        assert "workspaces" not in counts[0]  # (the probe that found the row)
        assert store.count("messages", replace(known, known={}).due(step)) == due + 1
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
        rt.close()


def test_a_run_carries_out_its_plan_with_the_periods_the_plan_read(
        postgres_url: str, tmp_path: Path) -> None:
    """A setting changed between the plan and its run applies from the next plan: the
    run deletes what the plan counted, without reading every parent again."""
    made = _build(postgres_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, KEEP)), Clock(NOW))
    store = rt.catalog.store_of("messages")
    reads: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM workspaces" in statement and "messages" not in statement:
            reads.append(statement)

    engine = sa.create_engine(normalize_url(postgres_url))
    try:
        plan = build_plan(rt)
        planned = next(a.rows for a in plan.actions if a.step.dataset == "messages")
        with engine.begin() as conn:  # workspace 2 shortens its period: 365 -> 10 days
            conn.execute(sa.text("UPDATE workspaces SET message_retention_days = 10"
                                 " WHERE id = 2"))
        sa.event.listen(store.inner.engine, "before_cursor_execute", seen)  # type: ignore[attr-defined]
        result = execute(rt, plan, batch_size=7)
        sa.event.remove(store.inner.engine, "before_cursor_execute", seen)  # type: ignore[attr-defined]
        assert result.ok, result.as_dict()
        action = next(a for a in result.actions if a.planned.step.dataset == "messages")
        assert action.done == planned  # as counted, by the periods read for the plan
        assert reads == []  # the parents were not read again
        with engine.connect() as conn:
            left = {made[i] for i in conn.execute(sa.text("SELECT id FROM messages")).scalars()}
        assert {(2, age) for age in AGES if 10 < age <= 365} <= left
        after = build_plan(rt)  # the next plan reads the new setting
        assert next(a.rows for a in after.actions if a.step.dataset == "messages") == \
            sum(1 for age in AGES if 10 < age <= 365)
    finally:
        engine.dispose()
        rt.close()
