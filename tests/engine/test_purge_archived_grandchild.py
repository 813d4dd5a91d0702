"""A retention purge takes a purged account's rows out of the archive of a grandchild.

users -> orders -> order_lines, order_lines archived to a cold store after a year. An
account soft-deleted past its window is purged by `lethe run`: its orders and order
lines go by cascade, and the order lines archived earlier must leave the archive too
(erasure requests did this already; the purge did not: issue 16). Another account's
archived lines stay, and a held account keeps its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from lethe.clock import Clock
from lethe.engine.archive import ArchiveSink
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.holds import parse_scope, place_hold
from lethe.policy.load import load_policy
from lethe.runtime import Runtime

NOW = datetime(2026, 6, 1, tzinfo=UTC)
GONE, KEPT, HELD = 1, 2, 3  # purged; active; purged but held


def _policy(tmp_path: Path) -> Path:
    policy: dict[str, Any] = {
        "lethe": 1, "organization": "Shop",
        "control": f"sqlite:///{tmp_path / 'state.db'}",
        "audit": {"key": str(tmp_path / "audit.key")},
        "stores": {"app": {"url": f"sqlite:///{tmp_path / 'app.db'}"},
                   "cold": {"url": f"file://{tmp_path / 'cold'}"}},
        "subjects": {"user": {"dataset": "users", "identities": ["id"]}},
        "datasets": {
            "users": {"store": "app", "table": "users", "class": "pii",
                      "soft_delete": {"column": "deleted_at", "recover_for": "30d"}},
            "orders": {"store": "app", "table": "orders", "class": "operational",
                       "belongs_to": {"users": "user_id"}},
            "order_lines": {"store": "app", "table": "order_lines", "class": "operational",
                            "belongs_to": {"orders": "order_id"},
                            "retention": [{"keep": "365d", "after": "created_at",
                                           "action": "archive", "to": "cold"}]},
        },
    }
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return path


def _fill(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id INTEGER PRIMARY KEY, deleted_at TIMESTAMP)"))
        conn.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER)"))
        conn.execute(sa.text("CREATE TABLE order_lines (id INTEGER PRIMARY KEY, "
                             "order_id INTEGER, created_at TIMESTAMP)"))
        for user in (GONE, KEPT, HELD):
            deleted = None if user == KEPT else NOW - timedelta(days=40)
            conn.execute(sa.text("INSERT INTO users VALUES (:u, :d)"), {"u": user, "d": deleted})
            for order in range(2):
                order_id = user * 10 + order
                conn.execute(sa.text("INSERT INTO orders VALUES (:o, :u)"),
                             {"o": order_id, "u": user})
                conn.execute(sa.text("INSERT INTO order_lines VALUES (:i, :o, :t)"), [
                    {"i": order_id * 10 + k, "o": order_id,
                     "t": NOW - timedelta(days=400 if k else 5)} for k in range(2)])
    engine.dispose()


def _archived(rt: Runtime) -> dict[str, int]:
    """Archived order lines per order."""
    sink = ArchiveSink(rt, "order_lines", rt.catalog.object_store("cold"))
    orders = {str(u * 10 + o): str(u * 10 + o) for u in (GONE, KEPT, HELD) for o in range(2)}
    return dict(sink.erase("order_id", orders, dry=True))


def _left(tmp_path: Path, table: str) -> int:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.connect() as conn:
        count = int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    engine.dispose()
    return count


def test_a_purge_takes_a_grandchilds_archived_rows_of_the_account(tmp_path: Path) -> None:
    path = _policy(tmp_path)
    _fill(tmp_path)
    # Twenty days ago the old lines were archived; no account was past its window yet.
    early = Runtime.open(load_policy(path), Clock(NOW - timedelta(days=20)))
    try:
        execute(early, build_plan(early))
        assert _archived(early) == {str(u * 10 + o): 1 for u in (GONE, KEPT, HELD)
                                    for o in range(2)}
        place_hold(early.control, early.audit, early.clock,
                   parse_scope(early.policy, f"user:{HELD}", None, None), "case 9")
    finally:
        early.close()

    rt = Runtime.open(load_policy(path), Clock(NOW))
    try:
        plan = build_plan(rt)
        lines = {(a.step.dataset, a.step.action): a.rows for a in plan.actions}
        assert lines[("order_lines", "remove-archived")] == 2  # GONE's two archived lines
        result = execute(rt, plan)
        assert result.ok, result.as_dict()
        done = {(a.planned.step.dataset, a.planned.step.action): a.done for a in result.actions}
        assert done[("order_lines", "remove-archived")] == 2
        archived = _archived(rt)
    finally:
        rt.close()
    assert archived == {str(u * 10 + o): 1 for u in (KEPT, HELD) for o in range(2)}
    assert _left(tmp_path, "users") == 2 and _left(tmp_path, "orders") == 4
    assert _left(tmp_path, "order_lines") == 4  # the recent lines of KEPT and HELD
