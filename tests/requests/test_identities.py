"""Identities match exactly, by the column's type, in requests and holds alike: a value
that is not a canonical value of its column's type is refused (naming the identity, never
echoing the value), and a string reaches only the rows whose value is that very string."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.commands.holds import hold_scope
from lethe.errors import UsageError
from lethe.requests.discovery import subject_rows
from lethe.requests.service import open_request
from tests.fixtures import build_app, runtime, users, write_policy

# emails that differ from one another only in ways a loose match would blur
TWINS = ["u1@example.com", "u1@example.com ", " u1@example.com", "U1@example.com",
         "u%@example.com", "u_@example.com", "o'brien@example.com", 'q"uote@example.com',
         unicodedata.normalize("NFC", "jos\u00e9@example.com"),
         unicodedata.normalize("NFD", "jos\u00e9@example.com"),
         "\uff551@example.com", "u1@example.com\u200b"]
HOSTILE_EMAILS = [*TWINS, "%", "_", "u%", "%@example.com", "' OR '1'='1", "\\", "x" * 10_000,
                  "u1@example.com\t", "u1@example.com\n", "a\x00b"]
BAD_IDS = ["4_2", "\u0664\u0662", "+42", " 42", "42 ", "0042", "4\uff12", "42.0", "1e1",
           "-0042", "", "4 2", "9" * 40, "0x2a", "\x0042"]


@pytest.fixture
def app(app_url: str, tmp_path: Path) -> tuple[sa.Engine, Path]:
    engine = build_app(app_url)
    with engine.begin() as conn:
        conn.execute(users.insert(), [
            {"id": 100 + i, "workspace_id": "ws_a", "email": email, "display_name": "twin"}
            for i, email in enumerate(TWINS)])
        conn.execute(users.update().where(users.c.id == 4).values(email="42"))
    return engine, write_policy(tmp_path, app_url)


def reached(rt: object, value: str, identity: str = "email") -> set[int]:
    from lethe.runtime import Runtime
    assert isinstance(rt, Runtime)
    store = rt.catalog.store_of("users")
    return set(store.values("users", "id", subject_rows(rt.policy, "user", {identity: value})))


def test_no_hostile_email_reaches_anyone_but_its_exact_owner(
        app: tuple[sa.Engine, Path]) -> None:
    engine, policy = app
    rt = runtime(policy)
    with engine.connect() as conn:
        stored = {row.id: row.email for row in conn.execute(sa.select(users.c.id, users.c.email))}
    wrong = refused = 0
    try:
        for value in HOSTILE_EMAILS:
            try:
                open_request(rt, "access", "user", [f"email={value}"])
            except UsageError as exc:
                refused += 1
                assert "'email'" in exc.message and value not in str(exc)
                continue
            owners = {i for i, e in stored.items() if e == value}
            wrong += len(reached(rt, value) ^ owners)
    finally:
        rt.close()
    assert wrong == 0
    assert refused == 3  # the tab, the newline and the NUL: control characters


@pytest.mark.parametrize("value", BAD_IDS)
def test_a_loosely_written_integer_id_is_refused_without_echoing_it(
        app: tuple[sa.Engine, Path], value: str) -> None:
    _, policy = app
    rt = runtime(policy)
    try:
        with pytest.raises(UsageError) as caught:
            open_request(rt, "erasure", "user", [f"id={value}"])
    finally:
        rt.close()
    assert caught.value.exit_code == 2
    assert "identity 'id'" in caught.value.message
    assert not value.strip() or value.strip() not in str(caught.value)


def test_a_plain_integer_id_opens_and_reaches_its_row(app: tuple[sa.Engine, Path]) -> None:
    _, policy = app
    rt = runtime(policy)
    try:
        record = open_request(rt, "access", "user", ["id=7"])
        assert record.identities == {"id": "7"}
        assert reached(rt, "7", "id") == {7}
        assert reached(rt, "0007", "id") == set()  # the store binds no loose spelling either
        assert reached(rt, "-0", "id") == set()
    finally:
        rt.close()


def test_a_hold_key_matches_exactly_as_a_request_does(app: tuple[sa.Engine, Path]) -> None:
    _, policy = app
    rt = runtime(policy)
    try:
        # '0042' is no integer id, but it is a string an email could be: accepted, and it
        # reaches no one (user 4's email is '42', user 42 does not exist)
        scope = hold_scope(rt, "user:0042", None, None)
        assert scope.value == "0042" and reached(rt, "0042") == set()
        assert hold_scope(rt, "user:u1@example.com ", None, None).value == "u1@example.com "
        with pytest.raises(UsageError, match="not a value of any identity") as caught:
            hold_scope(rt, "user:a\x00b", None, None)
        assert "a\x00b" not in str(caught.value)
    finally:
        rt.close()


def test_one_bad_request_in_a_bulk_run_is_rejected_and_the_others_run(
        app: tuple[sa.Engine, Path], tmp_path: Path) -> None:
    """A request stored before identities were checked at open (here written straight to
    the control store) with a NUL in its email: the bulk run rejects it alone."""
    from lethe.commands.requests import run_open_requests
    from lethe.requests.records import requests_of

    engine, policy = app
    rt = runtime(policy)
    try:
        good = [open_request(rt, "erasure", "user", [f"email=user{i}@example.com"]).id
                for i in (8, 9)]
        [record] = requests_of(rt).create_many("erasure", "user",
                                               [({"email": "a\x00b"}, "fp")],
                                               rt.clock.now(), rt.clock.now())
        bad = record.id
        outcomes = {o.record.id: o for o in run_open_requests(rt, tmp_path / "out")}
        statuses = {i: requests_of(rt).get(i).status for i in [*good, bad]}
    finally:
        rt.close()
    # the good ones went on: soft-deleted, recoverable for the policy's 30 days
    assert statuses == {good[0]: "in_progress", good[1]: "in_progress", bad: "rejected"}
    assert "identity 'email'" in (outcomes[bad].record.note or "")
    with engine.connect() as conn:
        deleted = set(conn.execute(sa.select(users.c.id).where(
            users.c.deleted_at.is_not(None), users.c.id.in_([8, 9]))).scalars())
    assert deleted == {8, 9}
