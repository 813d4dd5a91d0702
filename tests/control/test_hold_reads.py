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
