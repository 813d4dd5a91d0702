"""Statements built once per condition shape and run again with new values (issue 20).

A shape is the condition with its values taken out; what decides the SQL stays in it.
Run on SQLite and PostgreSQL with the test application's tables: every answer must be
the answer for the values given now, never those the statement was built with.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lethe.stores.base import Delete, Eq, In, Not, Sweep, all_of
from lethe.stores.sql import SqlStore
from tests.fixtures import build_app


@pytest.fixture
def store(app_url: str, tmp_path: Path) -> SqlStore:
    build_app(app_url)
    return SqlStore("app", app_url)


def test_conditions_that_differ_in_values_share_a_shape(store: SqlStore) -> None:
    one, values_one = store.shape(In("user_id", (1,)), "sessions")
    two, values_two = store.shape(In("user_id", (2,)), "sessions")
    assert one == two and values_one != values_two
    # what decides the SQL is in the shape
    assert store.shape(In("user_id", (1, None)), "sessions")[0] != one  # a NULL
    assert store.shape(In("user_id", tuple(range(40))), "sessions")[0] != one  # an array
    assert store.shape(Eq("user_id", "ada@example.com"), "sessions")[0] == ("false",)
    assert store.shape(Eq("user_id", 3), "sessions")[0] != one
    store.close()


def test_one_statement_answers_for_each_subject(store: SqlStore) -> None:
    """Counts, distinct values and grouped counts of ten subjects: each right, from one
    statement built per kind."""
    for user in range(1, 11):
        where = all_of(In("user_id", (user,)), Not(Eq("id", user * 10)))
        assert store.count("sessions", where) == 1
        assert store.values("sessions", "user_id", In("user_id", (user,))) == [user]
        assert store.count_by("sessions", "user_id", In("user_id", (user, 11))) == {user: 2}
        assert store.count_each([("sessions", In("user_id", (user,))),
                                 ("invoices", In("user_id", (user,)))]) == [2, 1]
    assert len(store._statements) == 4
    store.close()


@pytest.mark.postgres
def test_a_selective_delete_is_built_once_and_deletes_only_its_subject(
        postgres_url: str) -> None:
    build_app(postgres_url)
    store = SqlStore("app", postgres_url)
    for user in (3, 4):
        batch = store.sweep_batch(Sweep("sessions", "id", In("user_id", (user,)), Delete(),
                                        selective=True, durable=False), None, 100)
        assert batch.rows == 2 and batch.upper == user * 10 + 1
    store.flush()
    assert len(store._statements) == 1
    assert store.count("sessions", In("user_id", (3, 4, 5))) == 2  # user 5's two
    store.close()
