"""A held subject's erasure (issue 18, items 4 and 5): the request says held, not
soft-deleted, while the hold keeps the subject row, and the recovery window starts when
the soft delete really happens; the certificate counts the rows as they are at
completion, not as they were when a held run first counted them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from lethe.control.requests import RequestStore
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.holds import parse_scope, place_hold, release_hold
from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.requests.service import open_request, run_request
from tests.fixtures import (
    NOW,
    RECOVER_FOR,
    build_app,
    days_ago,
    ids,
    invoices,
    runtime,
    users,
    write_policy,
)

WINDOW = RECOVER_FOR


def _deleted_at(engine: sa.Engine, user: int) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.select(users.c.deleted_at).where(users.c.id == user)).scalar()


def test_a_held_subject_is_told_held_and_its_window_starts_when_it_is_soft_deleted(
        app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    rt = runtime(policy, NOW)
    hold = place_hold(rt.control, rt.audit, rt.clock,
                      parse_scope(rt.policy, "user:7", None, None), "case 4")
    record = open_request(rt, "erasure", "user", ["id=7"])
    first = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert first.record.status == "in_progress"
    assert first.record.note is not None and f"held by hold {hold}" in first.record.note
    assert "soft-deleted" not in first.record.note and "recoverable" not in first.record.note
    assert first.record.soft_deleted_at is None and _deleted_at(engine, 7) is None
    assert first.as_dict()["datasets"]["users"]["held"] == 1

    released = NOW + timedelta(days=10)
    rt = runtime(policy, released)
    release_hold(rt.control, rt.audit, rt.clock, hold, "case closed")
    second = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert second.record.note == ("soft-deleted; recoverable until "
                                  f"{(released + WINDOW).isoformat()}")
    assert second.record.soft_deleted_at == released and _deleted_at(engine, 7) is not None

    # a window after the request, but not after the soft delete: still recoverable
    rt = runtime(policy, NOW + WINDOW + timedelta(days=1))
    early = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert early.record.status == "in_progress" and 7 in ids(engine, users)

    rt = runtime(policy, released + WINDOW + timedelta(days=1))
    done = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert done.record.status == "completed" and 7 not in ids(engine, users)


def test_the_certificate_counts_the_retained_rows_that_remain_at_completion(
        app_url: str, tmp_path: Path) -> None:
    """User 7's six invoices are retained (tax law, 7 years); five of them reach seven
    years while a hold keeps the request open, and retention deletes them. At completion
    one remains: the certificate says one retained and five gone, not six retained."""
    engine = build_app(app_url)
    with engine.begin() as conn:
        conn.execute(invoices.insert(), [{"id": 100 + i, "user_id": 7,
                                          "issued_at": days_ago(7 * 365 - 20)}
                                         for i in range(5)])
    policy = write_policy(tmp_path, app_url)
    rt = runtime(policy, NOW)
    record = open_request(rt, "erasure", "user", ["id=7"])
    run_request(rt, record.id, tmp_path / "out")  # soft-delete
    hold = place_hold(rt.control, rt.audit, rt.clock,
                      parse_scope(rt.policy, None, None, "sessions"), "litigation")
    rt.close()

    later = NOW + timedelta(days=31)
    rt = runtime(policy, later)
    held = run_request(rt, record.id, tmp_path / "out")
    assert held.record.status == "in_progress"
    assert held.as_dict()["datasets"]["invoices"] == {"rows": 6, "erased": 0, "retained": 6,
                                                     "held": 0}
    result = execute(rt, build_plan(rt, ["invoices"]))
    assert result.ok
    assert ids(engine, invoices, invoices.c.user_id == 7) == {7}
    release_hold(rt.control, rt.audit, rt.clock, hold, "case closed")
    done = run_request(rt, record.id, tmp_path / "out")
    stored = RequestStore(rt.control.engine).get(record.id)
    rt.close()
    assert done.record.status == "completed" and stored.status == "completed"
    assert done.as_dict()["datasets"]["invoices"] == {"rows": 6, "erased": 5, "retained": 1,
                                                     "held": 0}
    assert done.certificate is not None
    document = load_certificate(done.certificate)
    assert verify_certificate(document).ok
    [entry] = [d for d in document["certificate"]["datasets"] if d["dataset"] == "invoices"]
    assert (entry["rows"], entry["erased"], entry["retained"]) == (6, 5, 1)
