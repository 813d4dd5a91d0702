"""`insert_many` and `update_many` hand rows to the driver's executemany (audit entries,
erasure baselines, requests moved): every value lands as given — datetimes as their
column's type writes them — on SQLite and PostgreSQL, and through SQLAlchemy's own
statements for a driver whose parameters they cannot write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from lethe.control.requests import RequestStore
from lethe.control.schema import request_baselines, requests
from lethe.control.tx import as_utc, insert_many, update_many
from lethe.stores.sql import normalize_url

ROWS = [(1, "orders", 3, None), (1, "naïve — ünïcode", 0, '["a", "b"]'),
        (2, "orders", 2**40, "[]"), (3, "it's; DROP TABLE x --", 7, None)]


def _round_trip(engine: sa.Engine) -> list[tuple[object, ...]]:
    request_baselines.drop(engine, checkfirst=True)
    request_baselines.create(engine)
    try:
        with engine.begin() as conn:
            insert_many(conn, request_baselines, ROWS)
            insert_many(conn, request_baselines, [])  # nothing: no statement
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(request_baselines).order_by(
                request_baselines.c.request_id, request_baselines.c.dataset))]
    finally:
        request_baselines.drop(engine)
        engine.dispose()


def test_rows_land_as_given(app_url: str) -> None:
    assert _round_trip(sa.create_engine(normalize_url(app_url))) == sorted(ROWS, key=lambda r: (
        r[0], r[1]))


def test_a_driver_taking_named_parameters_goes_through_sqlalchemy(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'named.db'}", paramstyle="named")
    assert engine.dialect.paramstyle == "named"
    assert _round_trip(engine) == sorted(ROWS, key=lambda r: (r[0], r[1]))


def _moved(engine: sa.Engine) -> list[tuple[object, ...]]:
    """Three requests written, two of them moved by `update_many` (one column set to
    None, a datetime with microseconds, a quote in the text), read back."""
    requests.drop(engine, checkfirst=True)
    requests.create(engine)
    at = datetime(2026, 12, 7, 23, 59, 58, 123456, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            conn.execute(requests.insert(), [
                {"id": i, "kind": "erasure", "subject_kind": "user", "identities": "{}",
                 "fingerprint": f"f{i}", "status": "received", "received_at": at,
                 "due_at": at, "updated_at": at, "note": "opened"} for i in (1, 2, 3)])
            update_many(conn, requests, "id", ["completed_at", "note", "status"], [
                (at + timedelta(hours=1), None, "completed", 1),
                (at + timedelta(days=1), "it's done; -- really", "in_progress", 3)])
            update_many(conn, requests, "id", ["status"], [])  # nothing: no statement
        with engine.connect() as conn:
            return [(r.id, r.status, r.note, as_utc(r.completed_at), as_utc(r.updated_at))
                    for r in conn.execute(sa.select(requests).order_by(requests.c.id))]
    finally:
        requests.drop(engine)
        engine.dispose()


MOVED = [(1, "completed", None, datetime(2026, 12, 8, 0, 59, 58, 123456, tzinfo=UTC),
          datetime(2026, 12, 7, 23, 59, 58, 123456, tzinfo=UTC)),
         (2, "received", "opened", None, datetime(2026, 12, 7, 23, 59, 58, 123456, tzinfo=UTC)),
         (3, "in_progress", "it's done; -- really",
          datetime(2026, 12, 8, 23, 59, 58, 123456, tzinfo=UTC),
          datetime(2026, 12, 7, 23, 59, 58, 123456, tzinfo=UTC))]


def test_requests_move_as_given(app_url: str) -> None:
    assert _moved(sa.create_engine(normalize_url(app_url))) == MOVED


def test_requests_move_through_sqlalchemy_for_named_parameters(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'named.db'}", paramstyle="named")
    assert _moved(engine) == MOVED


def test_a_request_store_update_reads_back_as_written(tmp_path: Path) -> None:
    """`RequestStore.update_each` (the path every transition takes) through it."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'control.db'}")
    requests.create(engine)
    at = datetime(2026, 12, 7, 1, 2, 3, 4, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(requests.insert(), [
            {"id": 1, "kind": "erasure", "subject_kind": "user", "identities": "{}",
             "fingerprint": "f", "status": "received", "received_at": at, "due_at": at,
             "updated_at": at}])
    store = RequestStore(engine)
    store.update_each([(1, {"status": "completed", "completed_at": at,
                            "result": {"datasets": {"orders": {"rows": 2}}}, "note": None})])
    record = store.get(1)
    assert (record.status, record.completed_at, record.result, record.note) == \
        ("completed", at, {"datasets": {"orders": {"rows": 2}}}, None)
    engine.dispose()
