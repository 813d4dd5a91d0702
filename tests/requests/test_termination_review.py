"""What a review of the workspace termination found (issue 22, item 3), each now a test:
rows of other workspaces that belong to the workspace's people, two subject kinds on
one dataset or one keyed dataset, a person who joins while the termination is held,
the subject dataset's own `erasure`, and archived rows it could not trace."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lethe.crypto.keys import Shredded
from lethe.errors import PolicyError
from lethe.holds import parse_scope, place_hold, release_hold
from lethe.policy.load import load_policy
from lethe.requests.service import open_request, run_request
from lethe.requests.termination import open_termination
from tests.fixtures import NOW, POLICY, build_app, ids, runtime, users, write_policy

COMMENTS = {"store": "app", "table": "comments", "class": "pii", "workspace": "workspace_id",
            "belongs_to": {"users": "user_id"}}


def _datasets(**more: Any) -> dict[str, Any]:
    datasets = copy.deepcopy(POLICY["datasets"])
    datasets.update(more)
    return datasets


@pytest.mark.postgres
@pytest.mark.parametrize("on_delete", ["CASCADE", "NO ACTION", None])
def test_another_workspace_s_row_of_one_of_its_people_goes_with_them_and_is_counted(
        postgres_url: str, tmp_path: Path, on_delete: str | None) -> None:
    engine = build_app(postgres_url)
    fk = "" if on_delete is None else f" REFERENCES users (id) ON DELETE {on_delete}"
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE comments (id int PRIMARY KEY, workspace_id text,"
                             f" user_id int{fk}, body text)"))
        conn.execute(sa.text("INSERT INTO comments VALUES (1, 'ws_a', 1, 'a'),"
                             " (2, 'ws_b', 1, 'a guest comment in b'), (3, 'ws_b', 6, 'b')"))
    policy = write_policy(tmp_path, postgres_url, termination={"within": "60d"},
                          datasets=_datasets(comments=COMMENTS))
    rt = runtime(policy, NOW)
    outcome = run_request(rt, open_termination(rt, "ws_a").id, tmp_path / "out")
    rt.close()
    assert outcome.record.status == "completed", outcome.record.note
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT id FROM comments")).scalars().all()
    assert left == [3]  # as an erasure of user 1 would leave it
    report = outcome.as_dict()["datasets"]["comments"]
    assert (report["rows"], report["erased"]) == (2, 2)


def test_two_kinds_on_one_dataset_keep_the_row_whose_objects_a_hold_keeps(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = build_app(url)
    datasets = _datasets(uploads={"store": "up", "prefix": "uploads/", "class": "pii",
                                  "per_subject": {"member": "uploads/{id}/"}})
    policy = write_policy(tmp_path, url, datasets=datasets,
                          stores={"app": {"url": url}, "up": {"url": f"file://{tmp_path}/up"}},
                          subjects={"user": {"dataset": "users", "identities": ["email", "id"]},
                                    "member": {"dataset": "users", "identities": ["id"]}})
    rt = runtime(policy, NOW)
    rt.catalog.object_store("up").put("uploads/7/a.txt", b"x")
    hold = place_hold(rt.control, rt.audit, rt.clock,
                      parse_scope(rt.policy, None, None, "uploads"), "case")
    record = open_request(rt, "erasure", "member", ["id=7"])
    run_request(rt, record.id, tmp_path / "out")  # soft-deletes
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=21))  # past the recovery window
    held = run_request(rt, record.id, tmp_path / "out")
    assert held.record.status == "in_progress"
    assert ids(engine, users, users.c.id == 7) == {7}  # its objects still need it
    release_hold(rt.control, rt.audit, rt.clock, hold, "done")
    done = run_request(rt, record.id, tmp_path / "out")
    left = [i.key for page in rt.catalog.object_store("up").pages("uploads/") for i in page]
    rt.close()
    assert done.record.status == "completed", done.record.note
    assert left == [] and ids(engine, users, users.c.id == 7) == set()


def test_a_keyed_dataset_two_kinds_name_counts_each_item_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = build_app(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE contacts (id integer PRIMARY KEY,"
                             " workspace_id text, email text)"))
        conn.execute(sa.text("INSERT INTO contacts VALUES (1, 'ws_a', 'c1@example.com'),"
                             " (2, 'ws_a', 'c2@example.com'), (3, 'ws_b', 'c3@example.com')"))
    datasets = _datasets(
        contacts={"store": "app", "table": "contacts", "class": "pii",
                  "workspace": "workspace_id"},
        uploads={"store": "up", "prefix": "uploads/", "class": "pii",
                 "per_subject": {"user": "uploads/u{id}/", "contact": "uploads/c{id}/"}})
    policy = write_policy(tmp_path, url, datasets=datasets, termination={"within": "60d"},
                          stores={"app": {"url": url}, "up": {"url": f"file://{tmp_path}/up"}},
                          subjects={"user": {"dataset": "users", "identities": ["email", "id"]},
                                    "contact": {"dataset": "contacts",
                                                "identities": ["email"]}})
    rt = runtime(policy, NOW)
    up = rt.catalog.object_store("up")
    for n in (1, 2, 3):  # users 1-3 are ws_a's; contacts 1-2
        up.put(f"uploads/u{n}/a", b"x")
        up.put(f"uploads/c{n}/a", b"x")
    outcome = run_request(rt, open_termination(rt, "ws_a").id, tmp_path / "out")
    left = sorted(i.key for page in up.pages("uploads/") for i in page)
    rt.close()
    assert left == ["uploads/c3/a"]
    report = outcome.as_dict()["datasets"]["uploads"]
    assert (report["rows"], report["erased"]) == (5, 5)


def test_a_person_who_joins_while_the_termination_is_held_loses_their_key(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = build_app(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE notes (id integer PRIMARY KEY, user_id integer,"
                             " body text)"))
    datasets = _datasets(notes={"store": "app", "table": "notes", "class": "pii",
                                "belongs_to": {"users": "user_id"}, "erasure": "shred"})
    policy = write_policy(tmp_path, url, datasets=datasets, termination={"within": "60d"},
                          encryption={"kek_file": str(tmp_path / "kek.json")})
    rt = runtime(policy, NOW)
    cipher = rt.cipher()
    hold = place_hold(rt.control, rt.audit, rt.clock,
                      parse_scope(rt.policy, None, None, "invoices"), "case")
    record = open_termination(rt, "ws_a")
    assert run_request(rt, record.id, tmp_path / "out").record.status == "in_progress"
    with engine.begin() as conn:  # joins the workspace meanwhile
        conn.execute(sa.text("INSERT INTO users (id, workspace_id, email)"
                             " VALUES (11, 'ws_a', 'new@example.com')"))
        conn.execute(sa.text("INSERT INTO notes VALUES (11, 11, :b)"), {
            "b": cipher.encrypt_field("user", 11, "secret", dataset="notes", column="body")})
    release_hold(rt.control, rt.audit, rt.clock, hold, "closed")
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=1))
    done = run_request(rt, record.id, tmp_path / "out")
    with engine.connect() as conn:
        note = conn.execute(sa.text("SELECT body FROM notes WHERE user_id = 11")).scalar_one()
    rt.close()
    assert done.record.status == "completed", done.record.note
    fresh = runtime(policy, NOW + timedelta(days=1))
    with pytest.raises(Shredded):
        fresh.cipher().decrypt_field(note, dataset="notes", column="body")
    fresh.close()


def test_the_people_s_own_rows_go_whatever_their_dataset_s_erasure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = build_app(url)
    policy = write_policy(tmp_path, url, termination={"within": "60d"},
                          datasets__users__erasure="shred",
                          encryption={"kek_file": str(tmp_path / "kek.json")})
    rt = runtime(policy, NOW)
    outcome = run_request(rt, open_termination(rt, "ws_a").id, tmp_path / "out")
    rt.close()
    assert outcome.record.status == "completed", outcome.record.note
    assert ids(engine, users, users.c.workspace_id == "ws_a") == set()
    assert outcome.datasets["users"].action == "delete"


def test_archived_rows_it_could_not_trace_are_a_policy_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    path = write_policy(tmp_path, url, termination={"within": "60d"},
                        stores={"app": {"url": url}, "cold": {"url": f"file://{tmp_path}/c"}},
                        datasets__sessions__retention=[{"keep": "30d", "after": "last_seen_at",
                                                        "action": "archive", "to": "cold"}])
    with pytest.raises(PolicyError, match=r"datasets\.sessions: a workspace's termination"):
        load_policy(path)
