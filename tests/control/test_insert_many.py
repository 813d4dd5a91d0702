"""`insert_many` hands plain rows to the driver's executemany (audit entries, erasure
baselines): every value lands as given, on SQLite and PostgreSQL, and through
SQLAlchemy's own insert for a driver whose parameters it cannot write."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from lethe.control.schema import request_baselines
from lethe.control.tx import insert_many
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
