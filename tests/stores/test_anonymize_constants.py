"""An anonymization by constants (`null`, `redact`, a literal) is one UPDATE per batch.

Every value it writes is the same whatever the old value was (NULL stays NULL), so the
SQL store rewrites the batch's rows in one statement, evaluated on the rows it locks,
instead of reading them and writing each back: on SQLite and PostgreSQL alike, with
the same result as the row-by-row functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from lethe.engine.anonymize import REDACTED, anonymizer, constant_written
from lethe.engine.steps import anonymize_effect
from lethe.policy.model import Dataset
from lethe.stores.base import Anonymize, In, Sweep
from lethe.stores.registry import open_store
from lethe.stores.sql import SqlStore, normalize_url
from lethe.testing.rows import sweep_to_the_end


@pytest.fixture
def notes(app_url: str) -> Iterator[tuple[sa.Engine, SqlStore]]:
    engine = sa.create_engine(normalize_url(app_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, user_id INTEGER,"
                             " body TEXT, phone TEXT, tag TEXT, at INTEGER)"))
        conn.execute(sa.text(
            "INSERT INTO notes VALUES (1, 7, 'hello', '555', 'x', 1), (2, 7, NULL, NULL, NULL, 1),"
            " (3, 8, 'hi', '556', 'y', 1), (4, 9, 'late', '557', 'z', 99)"))
    store = open_store("app", app_url)
    assert isinstance(store, SqlStore)
    yield engine, store
    store.close()
    engine.dispose()


def _constants() -> Anonymize:
    methods = {"body": "redact", "phone": "null", "tag": "gone"}
    written = {c: constant_written(m) for c, m in methods.items()}
    assert all(constant for constant, _ in written.values())
    return Anonymize(tuple((c, anonymizer(m)) for c, m in methods.items()), "user_id",
                     tuple((c, value) for c, (_, value) in written.items()))


@pytest.mark.parametrize("tally", ["at", "user_id"])
def test_the_rows_are_rewritten_in_one_statement_as_the_functions_would(
        notes: tuple[sa.Engine, SqlStore], tally: str) -> None:
    """Counted per value of a column the rewrite leaves alone (`at`): one UPDATE, its
    RETURNING the tally. Per value of the link it cuts (`user_id`): RETURNING would give
    NULL, so on SQLite the rows are read first, as for any anonymization; on PostgreSQL
    the UPDATE joins a subquery that locks the rows and reads their old values, and
    returns those: still one statement."""
    engine, store = notes
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "notes" in statement:
            seen.append(statement.lstrip())

    event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        batches = sweep_to_the_end(store, Sweep("notes", "id", In("user_id", (7, 8)),
                                                _constants(), tally=tally), 10)
    finally:
        event.remove(sa.engine.Engine, "before_cursor_execute", record)
    assert sum(b.rows for b in batches) == 3 and len(batches) == 1
    assert dict(batches[0].tallies) == ({1: 3} if tally == "at" else {7: 2, 8: 1})
    reads = [s for s in seen if s.startswith("SELECT notes.id, notes.body")]
    assert [s.split()[0] for s in seen if not s.startswith("SELECT") or s in reads][-1] \
        == "UPDATE"
    postgres = engine.dialect.name == "postgresql"
    assert len(reads) == (0 if tally == "at" or postgres else 1), seen
    if postgres:
        updates = [s for s in seen if s.startswith("UPDATE")]
        assert len(updates) == 1 and (" FROM " in updates[0]) == (tally == "user_id")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT * FROM notes ORDER BY id")).all() == [
            (1, None, REDACTED, None, "gone", 1), (2, None, None, None, None, 1),
            (3, None, REDACTED, None, "gone", 1), (4, 9, "late", "557", "z", 99)]


def test_a_value_read_from_itself_keeps_the_row_by_row_rewrite() -> None:
    """hash and the masks depend on the value: no constants, the store reads the rows."""
    for method in ("hash", "mask-email", "mask-email-domain"):
        assert constant_written(method) == (False, None)
    dataset = Dataset.model_validate({
        "store": "app", "table": "notes", "class": "pii",
        "fields": {"body": {"class": "pii", "anonymize": "redact"},
                   "email": {"class": "pii", "anonymize": "mask-email"}}})
    assert anonymize_effect(dataset).constants is None
    only_constants = Dataset.model_validate({
        "store": "app", "table": "notes", "class": "pii",
        "fields": {"body": {"class": "pii", "anonymize": "redact"},
                   "phone": {"class": "pii", "anonymize": None}}})
    assert anonymize_effect(only_constants).constants == (("body", REDACTED), ("phone", None))


@pytest.mark.postgres
def test_a_constant_lands_in_columns_that_refuse_text(postgres_url: str) -> None:
    """An enum and an inet column take a literal, as they did row by row: the rewrite's
    CASE has the column's type. Failed on a first version whose CASE PostgreSQL typed
    text (42804: column is of type mood but expression is of type text)."""
    engine = sa.create_engine(normalize_url(postgres_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TYPE mood AS ENUM ('happy', 'unknown')"))
        conn.execute(sa.text("CREATE TABLE people (id INTEGER PRIMARY KEY, user_id INTEGER,"
                             " mood mood, ip inet)"))
        conn.execute(sa.text("INSERT INTO people VALUES (1, 7, 'happy', '203.0.113.7'),"
                             " (2, 7, NULL, NULL)"))
    store = open_store("app", postgres_url)
    methods = {"mood": "unknown", "ip": "0.0.0.0"}
    effect = Anonymize(tuple((c, anonymizer(m)) for c, m in methods.items()), None,
                       tuple((c, constant_written(m)[1]) for c, m in methods.items()))
    try:
        [batch] = sweep_to_the_end(store, Sweep("people", "id", In("user_id", (7,)), effect),
                                   10)
    finally:
        store.close()
    assert batch.rows == 2
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT id, mood::text, host(ip) FROM people ORDER BY id")).all() == [
            (1, "unknown", "0.0.0.0"), (2, None, None)]
    engine.dispose()
