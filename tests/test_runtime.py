"""`Runtime.prepare`: the policy checked against the live schema once per reflection."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import lethe.runtime
from lethe.errors import SchemaMismatch
from tests.fixtures import build_app, runtime, write_policy


def test_the_schema_is_checked_once_per_reflection_and_a_mismatch_every_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_app(url)
    checks: list[object] = []
    real = lethe.runtime.require_schema
    monkeypatch.setattr(lethe.runtime, "require_schema",
                        lambda *a, **k: checks.append(a) or real(*a, **k))
    rt = runtime(write_policy(tmp_path, url))
    rt.prepare()
    rt.prepare()
    assert len(checks) == 1  # the same reflection: it still agrees
    rt.close()

    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a column the policy names, gone
        conn.execute(sa.text("ALTER TABLE sessions RENAME COLUMN user_id TO owner_id"))
    engine.dispose()
    checks.clear()
    rt = runtime(write_policy(tmp_path, url))
    for _ in range(2):  # a failed check is never remembered as passed
        with pytest.raises(SchemaMismatch, match="user_id"):
            rt.prepare()
    assert len(checks) == 2
    rt.close()
