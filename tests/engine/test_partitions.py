"""Partition-aware retention on PostgreSQL: whole partitions past retention are detached
and dropped, never one a hold reaches into; the rest goes through row batches."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from lethe.clock import Clock
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.engine.runtime import Runtime
from lethe.governance.check import check
from lethe.holds import parse_scope, place_hold
from lethe.policy.load import load_policy
from lethe.stores.sql import normalize_url

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 1, 15, tzinfo=UTC)  # keep 90d: the cutoff is 2025-10-17


def _build(url: str) -> sa.Engine:
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE events (id bigint, workspace_id text, "
                             "at timestamptz NOT NULL) PARTITION BY RANGE (at)"))
        for month in range(1, 13):
            upper = "2026-01-01" if month == 12 else f"2025-{month + 1:02d}-01"
            conn.execute(sa.text(f"CREATE TABLE events_2025_{month:02d} PARTITION OF events "
                                 f"FOR VALUES FROM ('2025-{month:02d}-01') TO ('{upper}')"))
        conn.execute(sa.text("CREATE TABLE events_other PARTITION OF events DEFAULT"))
        conn.execute(sa.text(
            "INSERT INTO events SELECT g, CASE WHEN g % 50 = 0 THEN 'ws_legal' ELSE 'ws_a' END,"
            " TIMESTAMPTZ '2025-01-01' + (g % 8760) * INTERVAL '1 hour'"
            " FROM generate_series(1, 26280) g"))
    return engine


def _policy(tmp_path: Path, url: str, **events: object) -> Path:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Test Co", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}},
        "datasets": {"events": {"store": "app", "table": "events", "key": "id",
                                "class": "behavioral", "workspace": "workspace_id",
                                "retention": [{"keep": "90d", "after": "at"}], **events}}}))
    return path


def _count(engine: sa.Engine, where: str = "TRUE") -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM events WHERE {where}"))
                   .scalar_one())


def _partitions(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass")).scalars())


CUTOFF = "at < TIMESTAMPTZ '2025-10-17'"


def test_expired_partitions_are_dropped_and_the_rest_batched(postgres_url: str,
                                                             tmp_path: Path) -> None:
    engine = _build(postgres_url)
    due, total = _count(engine, CUTOFF), _count(engine)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url)), Clock(NOW))
    assert not [f for f in check(rt.catalog).findings if f.code == "undeclared-table"]
    [planned] = build_plan(rt).actions
    assert planned.rows == due
    assert planned.as_dict()["path"] == "partitions" and planned.partitions == 9  # Jan-Sep
    [done] = execute(rt, build_plan(rt), batch_size=500).actions
    assert done.done == due and done.verified is True
    assert _count(engine, CUTOFF) == 0 and _count(engine) == total - due
    assert _partitions(engine) == ["events_2025_10", "events_2025_11", "events_2025_12",
                                   "events_other"]
    rt.close()


def test_a_hold_keeps_its_partition_whole_rows_path_instead(postgres_url: str,
                                                            tmp_path: Path) -> None:
    engine = _build(postgres_url)
    held = _count(engine, f"{CUTOFF} AND workspace_id = 'ws_legal'")
    due = _count(engine, CUTOFF)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url)), Clock(NOW))
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, None, "ws_legal", None),
               "litigation")
    [planned] = build_plan(rt).actions
    assert planned.partitions == 0 and planned.held == held  # every old month has a held row
    [done] = execute(rt, build_plan(rt), batch_size=2000).actions
    assert done.done == due - held and done.verified is True
    assert _count(engine, CUTOFF) == held  # exactly the held rows are left
    assert len(_partitions(engine)) == 13
    rt.close()


def test_rules_the_partitions_cannot_express_use_rows(postgres_url: str,
                                                      tmp_path: Path) -> None:
    engine = _build(postgres_url)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url, retention=[
        {"when": {"workspace_id": "ws_a"}, "keep": "90d", "after": "at"}])), Clock(NOW))
    [planned] = build_plan(rt).actions
    assert planned.as_dict()["path"] == "rows"
    execute(rt, build_plan(rt))
    assert len(_partitions(engine)) == 13
    assert _count(engine, f"{CUTOFF} AND workspace_id = 'ws_a'") == 0
    rt.close()


def test_only_the_partition_with_a_held_row_stays(postgres_url: str, tmp_path: Path) -> None:
    engine = _build(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO events VALUES (99999, 'ws_march', '2025-03-10')"))
    due = _count(engine, CUTOFF)
    rt = Runtime.open(load_policy(_policy(tmp_path, postgres_url)), Clock(NOW))
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, None, "ws_march", None),
               "case")
    [planned] = build_plan(rt).actions
    assert planned.partitions == 8 and planned.held == 1
    [done] = execute(rt, build_plan(rt), batch_size=2000).actions
    assert done.done == due - 1 and done.verified is True
    assert _count(engine, CUTOFF) == 1  # the held row, in its kept partition
    assert "events_2025_03" in _partitions(engine) and "events_2025_02" not in _partitions(engine)
    rt.close()
