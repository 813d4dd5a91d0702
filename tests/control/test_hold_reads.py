"""Holds are read once per change, not once per batch: a second control-store handle
(another worker) sees a hold placed or released by the first at its next read."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

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


def test_every_change_of_the_holds_moves_the_marker_a_reader_checks(control_url: str) -> None:
    """A SQLite control store's holds marker moves with every placing and release, seen
    from another handle (another worker); a PostgreSQL one has none (its readers read
    the SQL mark)."""
    reader, writer = ControlStore(control_url), ControlStore(control_url)
    now = datetime.now(UTC)
    try:
        if control_url.startswith("postgresql"):
            assert reader.holds_marker() is None
            return
        seen = [reader.holds_marker()]
        placed = writer.place_hold("dataset", "events", None, "case", now, "t")
        seen.append(reader.holds_marker())
        assert reader.holds_marker() == seen[-1]  # nothing changed: it stays
        writer.release_hold(placed, now, "t", "closed")
        seen.append(reader.holds_marker())
        assert len(set(seen)) == 3
    finally:
        reader.close()
        writer.close()


def test_a_hold_whose_change_cannot_be_marked_is_not_placed(tmp_path: Path) -> None:
    """A marker that cannot move would leave readers with the holds they had: placing
    fails instead, one line, and no hold is in force."""
    store = ControlStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        (tmp_path / "state.db.holds-changes").mkdir()  # (a directory: no byte can go in)
        with pytest.raises(StoreError, match="marking a change of the holds") as raised:
            store.place_hold("dataset", "events", None, "case", datetime.now(UTC), "t")
        assert "\n" not in str(raised.value)
        assert store.holds() == []
    finally:
        store.close()
