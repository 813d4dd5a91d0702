"""Regressions from review: never widen a request, never shred or cascade what is kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.holds import parse_scope, place_hold
from lethe.requests.service import open_request, run_request
from lethe.stores.sql import normalize_url
from tests.fixtures import NOW, build_app, ids, profiles, runtime, sessions, users, write_policy


def test_identities_of_two_people_erase_nobody(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    rt = runtime(write_policy(tmp_path, app_url))
    record = open_request(rt, "erasure", "user", ["email=user7@example.com", "id=8"])
    run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert {7, 8} <= ids(engine, users, users.c.deleted_at.is_(None))
    assert {70, 71, 80, 81} <= ids(engine, sessions)


def test_identities_matching_several_subjects_are_rejected(app_url: str,
                                                           tmp_path: Path) -> None:
    engine = build_app(app_url)
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.id.in_([7, 8])).values(display_name="Sam"))
    policy = write_policy(tmp_path, app_url,
                          subjects={"user": {"dataset": "users",
                                             "identities": ["email", "id", "display_name"]}})
    rt = runtime(policy)
    record = open_request(rt, "erasure", "user", ["display_name=Sam"])
    outcome = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert outcome.record.status == "rejected"
    assert outcome.record.note == "identities match 2 subjects"
    assert {7, 8} <= ids(engine, users, users.c.deleted_at.is_(None))


def test_retention_shred_keeps_the_key_of_a_subject_with_held_linked_rows(
        app_url: str, tmp_path: Path) -> None:
    build_app(app_url)  # users 1-4 closed long ago; invoices belong to users
    policy = write_policy(tmp_path, app_url, datasets__users__retention=[
        {"keep": "90d", "after": "closed_at", "action": "shred"}],
        datasets__users__soft_delete=None)
    rt = runtime(policy)
    cipher = rt.cipher()
    tokens = {i: cipher.encrypt_field("user", i, f"s{i}", dataset="invoices", column="x")
              for i in (1, 2)}
    place_hold(rt.control, rt.audit, rt.clock,
               parse_scope(rt.policy, None, None, "sessions"), "litigation")
    result = execute(rt, build_plan(rt, ["users"]))
    rt.close()
    shred = next(a for a in result.actions if a.planned.step.action == "shred")
    assert (shred.done, shred.planned.held) == (0, 4)
    fresh = runtime(policy).cipher()
    assert [fresh.decrypt_field(t, dataset="invoices", column="x") for t in tokens.values()] \
        == ["s1", "s2"]


def test_erasure_detaches_rows_retention_already_anonymized(postgres_url: str,
                                                            tmp_path: Path) -> None:
    engine = build_app(postgres_url)
    with engine.begin() as conn:  # the database itself would cascade a user delete
        conn.execute(sa.text("ALTER TABLE profiles ADD CONSTRAINT profiles_user FOREIGN KEY "
                             "(user_id) REFERENCES users (id) ON DELETE CASCADE"))
        conn.execute(profiles.update().where(profiles.c.id == 7)
                     .values(bio="[redacted]", phone=None))  # anonymized earlier, still linked
    policy = write_policy(tmp_path, postgres_url)
    rt = runtime(policy)
    record = open_request(rt, "erasure", "user", ["id=7"])
    run_request(rt, record.id, tmp_path / "out")
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=31))
    done = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert done.record.status == "completed"
    assert 7 not in ids(engine, users)
    check = sa.create_engine(normalize_url(postgres_url))
    with check.connect() as conn:
        row = conn.execute(sa.select(profiles).where(profiles.c.id == 7)).one()
    assert (row.user_id, row.bio) == (None, "[redacted]")  # kept, detached


def test_certificate_counts_rows_erased_before_a_hold_stopped_the_request(
        app_url: str, tmp_path: Path) -> None:
    from lethe.holds import release_hold

    build_app(app_url)
    policy = write_policy(tmp_path, app_url, datasets__users__soft_delete=None,
                          datasets__users__retention=[])
    rt = runtime(policy)
    hold_id = place_hold(rt.control, rt.audit, rt.clock,
                         parse_scope(rt.policy, None, None, "profiles"), "case")
    record = open_request(rt, "erasure", "user", ["id=7"])
    first = run_request(rt, record.id, tmp_path / "out")
    assert first.record.status == "in_progress"  # the profile is held
    assert first.as_dict()["datasets"]["sessions"]["erased"] == 2  # but sessions went
    release_hold(rt.control, rt.audit, rt.clock, hold_id, "closed")
    done = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert done.record.status == "completed"
    assert done.as_dict()["datasets"]["sessions"] == {"rows": 2, "erased": 2, "retained": 0,
                                                      "held": 0}


def test_a_subject_kept_by_retained_references_loses_its_personal_fields(
        sqlite_url: str, tmp_path: Path) -> None:
    engine = build_app(sqlite_url)
    with engine.begin() as conn:  # invoices (retained) really reference their user
        conn.execute(sa.text("CREATE TABLE invoices2 AS SELECT * FROM invoices"))
        conn.execute(sa.text("DROP TABLE invoices"))
        conn.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY, user_id INTEGER "
                             "REFERENCES users (id), issued_at DATETIME)"))
        conn.execute(sa.text("INSERT INTO invoices SELECT * FROM invoices2"))
        conn.execute(sa.text("DROP TABLE invoices2"))
    policy = write_policy(tmp_path, sqlite_url, datasets__users__soft_delete=None,
                          datasets__users__retention=[])
    rt = runtime(policy)
    done = run_request(rt, open_request(rt, "erasure", "user", ["id=7"]).id, tmp_path / "o")
    rt.close()
    assert done.record.status == "completed"
    assert done.as_dict()["datasets"]["users"] == {"rows": 1, "erased": 0, "retained": 1,
                                                   "held": 0}
    with engine.connect() as conn:
        row = conn.execute(sa.select(users).where(users.c.id == 7)).one()
    assert (row.email, row.display_name) == ("u***@example.com", "[redacted]")
