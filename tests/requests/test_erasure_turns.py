"""A lone subject's small erasure is one unit of work under the hold gate (issue 20).

Its datasets are erased in one turn of the gate with the holds read once, instead of a
turn and a hold read per dataset; a hold placed meanwhile waits for that turn, as it
waits for a batch, and binds everything after it.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lethe.control.store import ControlStore
from lethe.holds import parse_scope, place_hold
from lethe.requests.erasure import Group
from lethe.requests.service import open_request, run_request
from lethe.runtime import Runtime
from tests.fixtures import NOW, build_app, runtime, write_policy

EMAIL = "user7@example.com"  # user 7: two sessions, one invoice, one profile


def _past_the_window(url: str, tmp_path: Path) -> tuple[Path, Runtime, int]:
    """User 7's erasure, soft-deleted by its first run; a runtime past the window."""
    build_app(url)
    policy = write_policy(tmp_path, url)
    first = runtime(policy)
    record = open_request(first, "erasure", "user", [f"email={EMAIL}"])
    run_request(first, record.id, tmp_path / "out")
    first.close()
    return policy, runtime(policy, NOW + timedelta(days=31)), record.id


def _counting_hold_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads: list[int] = []
    original = ControlStore.holds

    def counted(self: ControlStore, **kwargs: Any) -> Any:
        reads.append(1)
        return original(self, **kwargs)

    monkeypatch.setattr(ControlStore, "holds", counted)
    return reads


@pytest.mark.parametrize("batch_size", [10_000, 1])
def test_a_small_erasure_reads_the_holds_once(app_url: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              batch_size: int) -> None:
    """Four datasets of user 7, a handful of rows: one hold read for the whole erasure.
    With batches of one row it is no longer small: every unit of work reads them."""
    _, rt, request_id = _past_the_window(app_url, tmp_path)
    reads = _counting_hold_reads(monkeypatch)
    done = run_request(rt, request_id, tmp_path / "out", batch_size)
    rt.close()
    assert done.record.status == "completed" and done.certified
    assert sum(r.erased for r in done.datasets.values()) >= 4
    if batch_size == 1:
        assert len(reads) > 4
    else:
        assert len(reads) == 1


def test_a_hold_placed_during_a_small_erasure_waits_for_it(app_url: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """`hold place` called while the erasure's turn is under way returns only once the
    turn has committed: the erasure finishes as it began, and the hold binds after."""
    policy, rt, request_id = _past_the_window(app_url, tmp_path)
    other = runtime(policy, NOW + timedelta(days=31))
    placed = threading.Event()
    seen_waiting: list[bool] = []

    def place() -> None:
        place_hold(other.control, other.audit, other.clock,
                   parse_scope(other.policy, None, None, "sessions"), "litigation")
        placed.set()

    original = Group.erased

    def erased(self: Group, action: Any, result: Any) -> None:
        if not seen_waiting:  # the first dataset done: place a hold from elsewhere
            placer = threading.Thread(target=place)
            placer.start()
            seen_waiting.append(not placed.wait(0.5))  # still waiting for the turn
        original(self, action, result)

    monkeypatch.setattr(Group, "erased", erased)
    done = run_request(rt, request_id, tmp_path / "out")
    assert placed.wait(30)
    rt.close()
    other.close()
    assert seen_waiting == [True]
    assert done.record.status == "completed"
    assert all(not r.held for r in done.datasets.values())
