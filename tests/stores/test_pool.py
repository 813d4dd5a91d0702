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


@pytest.mark.postgres
def test_reads_leave_the_connections_prepared_statements_in_place(postgres_url: str) -> None:
    """psycopg prepares a statement on a connection once it ran five times, and forgets
    all of them when the connection sees a ROLLBACK. A store's reads run outside a
    transaction, so they end in no ROLLBACK: the statements an erasure runs for every
    subject (its lookups, counts and deletes) are planned once per connection, not once
    per subject. Failed on the old code: every read ended in ROLLBACK, and nothing the
    store ran was ever prepared."""
    from lethe.stores.base import Eq
    from lethe.stores.sql import SqlStore

    admin = sa.create_engine(normalize_url(postgres_url))
    with admin.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (id bigint PRIMARY KEY, team text)"))
        conn.execute(sa.text("INSERT INTO people SELECT g, 't' || (g % 7)"
                             " FROM generate_series(1, 100) g"))
    admin.dispose()
    store = SqlStore("app", postgres_url)
    try:
        for n in range(40):
            team = f"t{n % 7}"
            assert store.values("people", "id", Eq("team", team))
            assert store.count_each([("people", Eq("team", team))]) == [
                len(store.select("people", ["id"], Eq("team", team)))]
        pooled = [store.engine.connect() for _ in range(store.engine.pool.checkedin())]
        try:
            prepared = [str(text) for conn in pooled for text in conn.execute(sa.text(
                "SELECT statement FROM pg_prepared_statements")).scalars()]
        finally:
            for conn in pooled:
                conn.close()
    finally:
        store.close()
    assert any("DISTINCT people.id" in text for text in prepared), prepared
    assert any("count(*)" in text for text in prepared), prepared


@pytest.mark.postgres
def test_a_read_that_cannot_connect_is_a_store_error(postgres_url: str) -> None:
    """A read whose connection fails (the database went away) says so in one line, as a
    StoreError naming the store, never a driver exception: the erasure that made it
    stops and says where."""
    from lethe.errors import StoreError
    from lethe.stores.base import Eq
    from lethe.stores.sql import SqlStore

    admin = sa.create_engine(normalize_url(postgres_url))
    with admin.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (id bigint PRIMARY KEY, team text)"))
    admin.dispose()
    store = SqlStore("app", postgres_url)
    try:
        assert store.values("people", "id", Eq("team", "t1")) == []  # reflected, pooled
        store.engine.dispose()
        other = sa.engine.make_url(normalize_url(postgres_url)).set(database="postgres")
        dropper = sa.create_engine(other, isolation_level="AUTOCOMMIT")
        with dropper.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{store.engine.url.database}" WITH (FORCE)'))
        dropper.dispose()
        with pytest.raises(StoreError) as raised:
            store.values("people", "id", Eq("team", "t1"))
        assert "stores.app" in str(raised.value.path) and "\n" not in raised.value.message
    finally:
        store.close()
