"""Upgrading a control store: a store an older lethe left behind gains the newer tables
and columns, and keeps what it holds."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from lethe.control.schema import MIGRATIONS, migrations_table
from lethe.control.store import ControlStore, RunOwner
from lethe.stores.sql import create_sql_engine

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _store_at(url: str, version: int) -> None:
    """What lethe with migrations up to `version` made, with one run recorded."""
    engine = create_sql_engine(url)
    with engine.begin() as conn:
        migrations_table.create(conn)
        for number, name, step in MIGRATIONS:
            if number <= version:
                step(conn)
                conn.execute(migrations_table.insert().values(version=number, name=name,
                                                              applied_at=NOW))
        run = conn.execute(sa.text(
            "INSERT INTO lethe_runs (started_at, now, status, actor, host, datasets) "
            "VALUES (:t, :t, 'completed', 'old', 'host', '[\"sessions\"]') RETURNING id"),
            {"t": NOW}).scalar_one()
        conn.execute(sa.text(
            "INSERT INTO lethe_run_actions (run_id, position, dataset, action, planned, held,"
            " done, batches, longest_batch_ms) VALUES (:r, 0, 'sessions', 'delete', 5, 0, 5,"
            " 1, 2.0)"), {"r": run})
    engine.dispose()


def test_a_version_9_store_gains_the_estimated_flag_and_keeps_its_runs(app_url: str) -> None:
    _store_at(app_url, 9)
    control = ControlStore(app_url)  # migrates
    assert control.schema_version() == MIGRATIONS[-1][0] == 15
    [old] = control.recent_runs()
    assert old["status"] == "completed"
    [action] = control.run(int(old["id"]))["actions"]
    assert action["done"] == 5 and action["estimated"] is None  # not known then
    assert action["blocked"] is None  # not recorded before migration 12
    assert old["pid"] is None  # an old run names no process (migration 11)
    run = control.start_run(NOW, "new", "host", ["sessions"], [
        {"dataset": "sessions", "action": "delete", "planned": 3, "held": 0}],
        owner=RunOwner("machine", 4242))
    control.record_action(run, 0, done=3, estimated=True, blocked=2,
                          blocked_by='{"invoices_user_id_fkey (invoices.user_id)": 2}')
    control.progress(run, {0: 2})
    control.finish_run(run, "completed_with_errors")  # 21 characters: too long before 11
    record = control.run(run)
    control.close()
    [action] = record["actions"]
    assert action["done"] == 5 and action["batches"] == 1 and action["estimated"] is True
    assert action["blocked"] == 2
    assert action["blocked_by"] == {"invoices_user_id_fkey (invoices.user_id)": 2}
    assert (record["machine"], record["pid"]) == ("machine", 4242)
    assert record["status"] == "completed_with_errors"
    assert record["alive_at"] is not None


def test_a_new_store_has_every_column_once(app_url: str) -> None:
    control = ControlStore(app_url)
    with control.engine.connect() as conn:
        columns = [c["name"] for c in sa.inspect(conn).get_columns("lethe_run_actions")]
    control.close()
    assert all(columns.count(c) == 1
               for c in ("estimated", "blocked", "blocked_by", "lag_seconds"))
    control = ControlStore(app_url)
    with control.engine.connect() as conn:
        run_columns = [c["name"] for c in sa.inspect(conn).get_columns("lethe_runs")]
    control.close()
    assert all(run_columns.count(c) == 1 for c in ("machine", "pid", "alive_at"))
