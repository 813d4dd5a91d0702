"""Pooled server connections: pinged when they rested, not before every use."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from lethe.stores.sql import engine as engines
from lethe.stores.sql import normalize_url


def _terminate(url: str, pid: int) -> None:
    admin = sa.create_engine(normalize_url(url))
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


@pytest.mark.postgres
def test_a_connection_that_rested_is_pinged_and_replaced_when_dead(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server restart between uses (here: the backend terminated) goes unnoticed by the
    caller: the checkout pings a connection that rested, finds it dead, reconnects."""
    monkeypatch.setattr(engines, "PING_AFTER_IDLE", 0.0)
    engine = engines.create_sql_engine(postgres_url)
    with engine.connect() as conn:
        first = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
    _terminate(postgres_url, first)
    with engine.connect() as conn:
        second = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
    assert second != first
    engine.dispose()


@pytest.mark.postgres
def test_a_connection_back_within_the_second_is_not_pinged(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep takes a connection for every batch: only the first checkout after the
    connection rested pays a round trip for the ping."""
    monkeypatch.setattr(engines, "PING_AFTER_IDLE", 60.0)
    engine = engines.create_sql_engine(postgres_url)
    pings: list[Any] = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping",
                        lambda dbapi_connection: pings.append(1) or ping(dbapi_connection))
    for _ in range(5):
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    assert pings == []
    monkeypatch.setattr(engines, "PING_AFTER_IDLE", 0.0)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert pings == [1]
    engine.dispose()
