"""Batch bounds: key ranges for dense integer keys, key windows for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from hypothesis import given
from hypothesis import strategies as st

from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.stores.sql import normalize_url
from lethe.stores.sql.windows import GROWTH, KeySpan, is_dense, next_width
from tests.fixtures import NOW, days_ago, runtime


@given(st.integers(1, 100_000), st.data())
def test_next_width_stays_within_bounds(limit: int, data: st.DataObject) -> None:
    width = data.draw(st.integers(limit, GROWTH * limit))
    matched = data.draw(st.integers(0, width))
    new = next_width(limit, width, matched)
    assert limit <= new <= GROWTH * limit  # a range of `new` unique keys holds <= new rows
    if matched * 2 >= width:  # dense: stay near the batch size
        assert new <= 2 * limit


def test_density_decides_the_mode() -> None:
    assert is_dense(KeySpan(1, 1000), 1000)
    assert not is_dense(KeySpan(1, 10**15), 1000)  # snowflake-style ids
    assert not is_dense(KeySpan(1, 10), 0)


def build(url: str, keys: list[object], key_type: sa.types.TypeEngine[object]) -> sa.Engine:
    engine = sa.create_engine(normalize_url(url))
    table = sa.Table("items", sa.MetaData(), sa.Column("id", key_type, primary_key=True),
                     sa.Column("ts", sa.DateTime(timezone=True)))
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": k, "ts": days_ago(100 if i % 3 else 1)}
                                      for i, k in enumerate(keys)])
    return engine


def policy(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "t", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}},
        "datasets": {"items": {"store": "app", "table": "items", "class": "operational",
                               "retention": [{"keep": "30d", "after": "ts"}]}}}))
    return path


@pytest.mark.parametrize("keys", [
    pytest.param([f"k{i:05d}" for i in range(600)], id="text keys"),
    pytest.param([i * 10**12 for i in range(600)], id="sparse integers"),
    pytest.param(list(range(1, 601)), id="dense integers"),
])
def test_every_key_shape_is_swept_completely(keys: list[object], app_url: str,
                                             tmp_path: Path) -> None:
    key_type = sa.String(20) if isinstance(keys[0], str) else sa.BigInteger()
    engine = build(app_url, keys, key_type)
    rt = runtime(policy(tmp_path, app_url), NOW)
    result = execute(rt, build_plan(rt), batch_size=7)
    rt.close()
    [action] = result.actions
    assert action.done == 400 and action.verified
    assert action.batches >= 400 // (7 * GROWTH)
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM items")).scalar_one()
    assert left == 200


def test_a_run_tells_how_long_its_batches_spent_on_their_journal(app_url: str,
                                                                 tmp_path: Path) -> None:
    """Each batch's journal (progress and audit entry, in the control store) is timed
    apart: part of the batches' time, there for every batch that took rows."""
    build(app_url, list(range(1, 601)), sa.BigInteger())
    rt = runtime(policy(tmp_path, app_url), NOW)
    [action] = execute(rt, build_plan(rt), batch_size=50).actions
    rt.close()
    assert action.done == 400 and action.batches >= 8
    assert 0 < action.journal_ms < action.batch_ms
