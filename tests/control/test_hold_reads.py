"""Holds are read once per change, not once per batch: a second control-store handle
(another worker) sees a hold placed or released by the first at its next read."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.control.schema import holds
from lethe.control.store import ControlStore
from lethe.errors import StoreError


@pytest.fixture(params=["sqlite", "postgres"])
def control_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_a_hold_placed_or_released_elsewhere_is_seen_at_the_next_read(control_url: str) -> None:
    reader, writer = ControlStore(control_url), ControlStore(control_url)
    now = datetime.now(UTC)
    try:
        assert reader.holds() == []
        first = writer.place_hold("subject", "ada@example.com", "user", "case 1", now, "t")
        assert [h.id for h in reader.holds()] == [first]
        second = writer.place_hold("workspace", "acme", None, "case 2", now, "t")
        assert [h.id for h in reader.holds()] == [first, second]
        writer.release_hold(first, now, "t", "closed")
        assert [h.id for h in reader.holds()] == [second]
        writer.release_hold(second, now, "t", "closed")
        third = writer.place_hold("dataset", "events", None, "case 3", now, "t")
        assert [h.id for h in reader.holds()] == [third]
        assert [h.id for h in reader.holds(include_released=True)] == [first, second, third]
        held = reader.holds()
        held.clear()  # a caller's copy: the next read is whole again
        assert [h.id for h in reader.holds()] == [third]
    finally:
        reader.close()
        writer.close()


def test_an_unchanged_mark_is_read_without_a_transaction_and_any_change_moves_it(
        tmp_path: Path) -> None:
    """SQLite: while the holds do not change, a read asks one statement on the driver's
    connection and nothing through SQLAlchemy; a hold inserted by plain SQL (not this
    API) moves the mark, and the next read has it."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    reader = ControlStore(url)
    statements: list[str] = []
    sa.event.listen(reader.engine, "before_cursor_execute",
                    lambda *args: statements.append(args[2]))
    try:
        assert reader.holds() == []
        statements.clear()
        assert reader.holds() == [] and reader.holds() == []
        assert statements == []  # the mark alone, on the driver's connection
        other = sa.create_engine(url)
        with other.begin() as conn:
            conn.execute(holds.insert().values(
                scope_kind="dataset", scope_value="events", subject_kind=None,
                reason="by hand", placed_at=datetime.now(UTC), placed_by="t"))
        other.dispose()
        assert [h.scope_value for h in reader.holds()] == ["events"]
        assert statements  # read through SQLAlchemy, in one transaction with its mark
    finally:
        reader.close()


def test_a_mark_that_cannot_be_read_is_a_one_line_error(tmp_path: Path) -> None:
    """The mark read on the driver's connection fails as every control-store read does:
    a StoreError naming what it was doing, one line, no traceback."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    reader = ControlStore(url)
    try:
        assert reader.holds() == []  # the holds now known: the next read checks the mark
        other = sa.create_engine(url)
        with other.begin() as conn:
            conn.execute(sa.text("ALTER TABLE lethe_holds RENAME TO lethe_holds_gone"))
        other.dispose()
        with pytest.raises(StoreError, match="reading holds") as raised:
            reader.holds()
        assert "\n" not in str(raised.value) and raised.value.path == "control"
    finally:
        reader.close()


def test_a_reader_returns_the_holds_its_mark_was_checked_against(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads share the cached holds: one that replaces them with older ones while
    another checks its mark (a slow reader outside the gate) must not make that other
    return the older holds for the newer mark; nor may it put older holds back."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store, writer = ControlStore(url), ControlStore(url)
    now = datetime.now(UTC)
    try:
        first = writer.place_hold("dataset", "events", None, "case 1", now, "t")
        older = (tuple(store._sqlite_mark() or ()), tuple(store.holds()))
        second = writer.place_hold("dataset", "users", None, "case 2", now, "t")
        assert [h.id for h in store.holds()] == [first, second]
        check = ControlStore._sqlite_mark

        def meanwhile(self: ControlStore) -> object:
            mark = check(self)
            self._active = older  # another thread's slower read lands now
            return mark

        monkeypatch.setattr(ControlStore, "_sqlite_mark", meanwhile)
        assert [h.id for h in store.holds()] == [first, second]
        monkeypatch.undo()
        assert [h.id for h in store.holds()] == [first, second]
    finally:
        store.close()
        writer.close()


def test_a_slower_reader_never_puts_older_holds_back(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that took its snapshot before a hold was placed, and finishes after another
    thread cached the newer holds, leaves the newer ones cached."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store, writer = ControlStore(url), ControlStore(url)
    now = datetime.now(UTC)
    try:
        first = writer.place_hold("dataset", "events", None, "case 1", now, "t")
        second = writer.place_hold("dataset", "users", None, "case 2", now, "t")
        make = ControlStore._hold
        third: list[int] = []

        def slowly(row: object) -> object:
            if not third:  # mid-read: a hold is placed and another thread caches it
                third.append(writer.place_hold("dataset", "orders", None, "c3", now, "t"))
                newer = ControlStore(url)
                newer.holds()
                store._active = newer._active
                newer.close()
            return make(row)

        monkeypatch.setattr(ControlStore, "_hold", staticmethod(slowly))
        assert [h.id for h in store.holds()] == [first, second]  # its own snapshot
        monkeypatch.undo()
        assert store._active is not None
        assert [h.id for h in store._active[1]] == [first, second, *third]
    finally:
        store.close()
        writer.close()


def test_a_connection_that_cannot_be_made_for_the_mark_is_a_one_line_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's error from making a new pooled connection (a file gone, a lock) is a
    StoreError too, like the statement's."""
    import sqlite3

    store = ControlStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert store.holds() == []

        def refuse() -> object:
            raise sqlite3.OperationalError("unable to open database file")

        monkeypatch.setattr(store.engine, "raw_connection", refuse)
        with pytest.raises(StoreError, match="reading holds") as raised:
            store.holds()
        assert "\n" not in str(raised.value)
    finally:
        monkeypatch.undo()
        store.close()
