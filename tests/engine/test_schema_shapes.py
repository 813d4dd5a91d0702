"""Keys and flags as real schemas have them (issue 18, item 7): a `keep: forever` rule
needs no time column, and soft delete works on a flag column (`active = 0`, with the
application's `last_update` saying since when), so no schema change is needed to adopt
lethe."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.errors import LetheError
from lethe.governance.check import check
from lethe.policy.load import load_policy
from lethe.reports.trust import render, trust_pages
from lethe.requests.service import open_request, run_request
from lethe.stores.sql import normalize_url
from tests.fixtures import NOW, days_ago, runtime


def _naive(at: datetime) -> datetime:
    return at.replace(tzinfo=None)


def _build(url: str) -> sa.Engine:
    """Customers with the sample database's `active` flag and `last_update` time: 1 closed
    long ago and live; 2 flagged deleted 40 days ago; 3 flagged 10 days ago (a 14-day
    window: 2 is past it, 3 is not); 4 and 5 live
    and open (5 has no flag at all)."""
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE customer (customer_id integer PRIMARY KEY, email varchar(200), "
            "status varchar(20), active integer, last_update timestamp NOT NULL, "
            "closed_at timestamp)"))
        rows = [(1, 1, 300, 200), (2, 0, 40, 200), (3, 0, 10, 200), (4, 1, 5, None),
                (5, None, 5, None)]
        conn.execute(sa.text("INSERT INTO customer VALUES (:id, :email, :status, :active, "
                             ":updated, :closed)"),
                     [{"id": i, "email": f"c{i}@example.com", "status": "member",
                       "active": active, "updated": _naive(days_ago(updated)),
                       "closed": None if closed is None else _naive(days_ago(closed))}
                      for i, active, updated, closed in rows])
    return engine


def _policy(tmp_path: Path, url: str, **changes: Any) -> Path:
    customer: dict[str, Any] = {
        "store": "app", "table": "customer", "class": "pii",
        "soft_delete": {"column": "active", "deleted_value": 0, "at": "last_update",
                        "recover_for": "14d"},
        "retention": [{"when": {"status": "staff"}, "keep": "forever"},
                      {"keep": "90d", "after": "closed_at", "action": "soft-delete"}]}
    customer.update(changes)
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Rentals", "control": f"sqlite:///{tmp_path / 'state.db'}",
        "stores": {"app": {"url": url}},
        "subjects": {"customer": {"dataset": "customer", "identities": ["email"]}},
        "datasets": {"customer": customer}}))
    return path


def _state(engine: sa.Engine) -> dict[int, tuple[Any, datetime]]:
    with engine.connect() as conn:
        return {row[0]: (row[1], row[2] if isinstance(row[2], datetime)
                         else datetime.fromisoformat(row[2]))  # SQLite: text
                for row in conn.execute(
                    sa.text("SELECT customer_id, active, last_update FROM customer"))}


def _run(policy: Path, at: datetime) -> dict[tuple[str, str], int]:
    rt = runtime(policy, at)
    try:
        result = execute(rt, build_plan(rt))
        assert result.ok, result.as_dict()
        return {(a.planned.step.action, str(a.planned.step.rule)): a.done
                for a in result.actions}
    finally:
        rt.close()


def test_soft_delete_on_a_flag_column_sets_it_and_purges_by_its_time_column(
        app_url: str, tmp_path: Path) -> None:
    engine = _build(app_url)
    policy = _policy(tmp_path, app_url)
    rt = runtime(policy, NOW)
    findings = check(rt.catalog, now=NOW).findings
    rt.close()
    assert [f for f in findings if f.severity == "error"] == []
    done = _run(policy, NOW)
    # 1 is soft-deleted now (flag and time set); 2 is past its window: purged; 3 is not
    assert (done[("soft-delete", "1")], done[("purge", "None")]) == (1, 1)
    state = _state(engine)
    assert set(state) == {1, 3, 4, 5}
    assert state[1][0] == 0 and state[1][1] == _naive(NOW)
    assert (state[4][0], state[5][0]) == (1, None)  # live, and a NULL flag counts as live
    _run(policy, NOW + timedelta(days=15))  # 1's and 3's windows have passed
    assert set(_state(engine)) == {4, 5}


def test_erasure_soft_deletes_through_the_flag_then_erases(app_url: str,
                                                          tmp_path: Path) -> None:
    engine = _build(app_url)
    policy = _policy(tmp_path, app_url)
    rt = runtime(policy, NOW)
    record = open_request(rt, "erasure", "customer", ["email=c5@example.com"])
    first = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert first.record.status == "in_progress" and "recoverable until" in (first.record.note
                                                                             or "")
    assert _state(engine)[5] == (0, _naive(NOW))
    rt = runtime(policy, NOW + timedelta(days=15))
    done = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert done.record.status == "completed" and 5 not in _state(engine)


def test_keep_forever_needs_no_time_column(app_url: str, tmp_path: Path) -> None:
    _build(app_url)
    policy = _policy(tmp_path, app_url)
    rt = runtime(policy, NOW)
    try:
        assert not any(f.path.endswith("retention[0].after") for f in
                       check(rt.catalog, now=NOW).findings)
        [forever] = [a for a in build_plan(rt).actions if a.step.rule == 0]
        assert (forever.step.action, forever.rows) == ("delete", 0)
    finally:
        rt.close()
    for fmt in ("markdown", "html"):
        text = " ".join(render(trust_pages(load_policy(policy), NOW), fmt).values())
        assert "for as long as we provide the service" in text
        assert "the  date" not in text


@pytest.mark.parametrize(("soft_delete", "message"), [
    ({"column": "active", "deleted_value": 0}, "needs both"),
    ({"column": "active", "at": "last_update"}, "needs both"),
    ({"column": "active", "deleted_value": 0, "at": "last update"}, "column")])
def test_a_half_declared_flag_is_a_clear_error(tmp_path: Path, soft_delete: dict[str, Any],
                                               message: str) -> None:
    path = _policy(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", soft_delete=soft_delete)
    with pytest.raises(LetheError, match=message):
        load_policy(path)


def test_a_time_rule_still_needs_its_column(tmp_path: Path) -> None:
    path = _policy(tmp_path, f"sqlite:///{tmp_path / 'app.db'}",
                   retention=[{"keep": "30d"}])
    with pytest.raises(LetheError, match="`after:` names the time column"):
        load_policy(path)
