"""The SQL store's set reads and tallies, on SQLite and PostgreSQL: long `IN` lists (an
array parameter on PostgreSQL), grouped counts, several counts at once, and per-value
tallies of what a sweep batch deleted or rewrote."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from lethe.stores.base import Delete, In, SetColumns, Sweep, all_of
from lethe.stores.sql import ARRAY_AFTER, SqlStore, normalize_url
from lethe.testing.rows import sweep_to_the_end


def _store(url: str) -> SqlStore:
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE items (id bigint PRIMARY KEY, owner bigint,"
                             " label text)"))
        conn.execute(sa.text("INSERT INTO items VALUES (:id, :owner, :label)"), [
            {"id": i, "owner": None if i % 10 == 0 else i % 7, "label": f"item {i}"}
            for i in range(1, 201)])
    engine.dispose()
    return SqlStore("app", url)


def test_in_lists_short_long_and_with_null_or_uncoercible_values(app_url: str) -> None:
    store = _store(app_url)
    long_list = tuple(range(1, 3 * ARRAY_AFTER))
    assert store.count("items", In("id", long_list)) == len(long_list)
    assert store.count("items", In("id", (*long_list, "not a number"))) == len(long_list)
    assert store.count("items", In("id", (1, 2, 3))) == 3
    with_null = (*range(0, ARRAY_AFTER + 5), None)
    expected = sum(1 for i in range(1, 201) if i % 10 == 0 or (i % 7) in range(ARRAY_AFTER + 5))
    assert store.count("items", In("owner", with_null)) == expected
    assert store.count("items", In("label", tuple(f"item {i}" for i in range(1, 40)))) == 39
    store.close()


def test_count_by_count_each_and_select(app_url: str) -> None:
    store = _store(app_url)
    owners = [None if i % 10 == 0 else i % 7 for i in range(1, 201)]
    by_owner = store.count_by("items", "owner", In("id", tuple(range(1, 201))))
    assert by_owner == {o: owners.count(o) for o in set(owners) if o is not None}
    assert store.count_each([("items", In("owner", (1,))), ("items", In("id", (5, 6)))]) == \
        [owners.count(1), 2]
    assert sorted(store.select("items", ["id", "owner"], In("id", (14, 21)))) == \
        [(14, 0), (21, 0)]
    store.close()


def test_sweep_tallies_every_row_it_touches_by_value(app_url: str) -> None:
    store = _store(app_url)
    owners = {i: None if i % 10 == 0 else i % 7 for i in range(1, 201)}
    wanted = (2, 3, 4)
    rewrite = Sweep("items", "id", In("owner", wanted), SetColumns((("label", "x"),)),
                    selective=True, tally="owner")
    rewritten: dict[object, int] = {}
    after = None
    while True:  # small batches: the tallies add up across them
        batch = store.sweep_batch(rewrite, after, 7)
        if batch.upper is None:
            break
        for value, rows in batch.tallies.items():
            rewritten[value] = rewritten.get(value, 0) + rows
        if batch.last:
            break
        after = batch.upper
    expected = {o: sum(1 for v in owners.values() if v == o) for o in wanted}
    assert rewritten == expected
    gone = store.sweep_batch(Sweep("items", "id", all_of(In("owner", (5,))), Delete(),
                                   selective=True, tally="owner"), None, 1000)
    assert dict(gone.tallies) == {5: sum(1 for v in owners.values() if v == 5)}
    assert gone.rows == gone.tallies[5]
    assert store.count("items", In("owner", (5,))) == 0
    store.close()


def test_long_lists_bind_as_one_parameter_and_keep_each_columns_type(app_url: str) -> None:
    """Held identities arrive as text (`user:42`, an email): a list long enough to be
    bound as one JSON parameter (and remembered once coerced) still matches an integer
    column by value, skips what cannot be its type, and matches text exactly, quotes and
    backslashes included."""
    store = _store(app_url)
    as_text = (*tuple(str(i) for i in range(1, 101)), "ada@example.com", "7x")
    for _ in range(2):  # the second count takes the remembered coercion
        assert store.count("items", In("id", as_text)) == 100
    assert store.count("items", In("owner", as_text)) == sum(
        1 for i in range(1, 201) if i % 10 and 1 <= i % 7 <= 100)
    labels = (*tuple(f"item {i}" for i in range(1, 80)), 'it"em', "it\\em", "item 1'")
    assert store.count("items", In("label", labels)) == 79
    engine = sa.create_engine(normalize_url(app_url))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE items SET label = :odd WHERE id = 200"),
                     {"odd": 'it"em\\ 200'})
    engine.dispose()
    assert store.count("items", In("label", (*labels, 'it"em\\ 200'))) == 80
    store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("limit", [1000, 7])
def test_a_selective_deletes_first_batch_goes_plainly_when_its_rows_fit(
        postgres_url: str, limit: int) -> None:
    """A selective delete's first batch counts its rows up to the batch size and deletes
    them plainly if they fit: one statement, no window of keys (a bulk erasure's groups).
    If they do not fit, that statement changes nothing and the windows take the rows a
    batch at a time; the tallies add up either way."""
    store = _store(postgres_url)
    owners = {i: None if i % 10 == 0 else i % 7 for i in range(1, 201)}
    wanted = (2, 3, 4)
    ran: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda *args: ran.append(args[2]) if "DELETE" in args[2] else None)
    batches = sweep_to_the_end(store, Sweep("items", "id", In("owner", wanted), Delete(),
                                            selective=True, tally="owner"), limit)
    tallies: dict[object, int] = {}
    for batch in batches:
        assert batch.rows <= limit
        for value, rows in batch.tallies.items():
            tallies[value] = tallies.get(value, 0) + rows
    assert tallies == {o: sum(1 for v in owners.values() if v == o) for o in wanted}
    assert store.count("items", In("owner", wanted)) == 0
    assert store.count("items", In("id", tuple(range(1, 201)))) == \
        200 - sum(tallies.values())  # no other row touched
    assert "lethe_window" not in ran[0] and "lethe_found" in ran[0]
    if limit == 1000:
        assert len(ran) == 1 and len(batches) == 1 and batches[0].last
    else:  # the plain form changed nothing; windows of 7 took the rows
        assert len(batches) > 3 and all("lethe_window" in s for s in ran[1:])
        assert len(ran) == len(batches) + 1
    store.close()


LINKS = {  # link column type -> three owners of that type, as Python reads them
    "bigint": (7, 8, 9),
    "text": ("ada", "Bob", "it's"),
    "uuid": tuple(uuid.UUID(int=i) for i in (7, 8, 9)),
    "citext": ("ada", "Bob", "it's"),
    "mood": ("sad", "ok", "happy"),
}


@pytest.mark.postgres
@pytest.mark.parametrize("link", list(LINKS))
def test_a_selective_deletes_tallies_are_each_owners_value_as_read(
        postgres_url: str, link: str) -> None:
    """A bulk erasure's batch tells each deleted row's owner: as one array for types the
    driver reads arrays of as it reads one value (integers, text, uuids), a row each for
    others (citext, enums: their arrays would arrive as text) — the same values either
    way, rows with no owner left out."""
    engine = sa.create_engine(normalize_url(postgres_url))
    owners = LINKS[link]
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS citext"))
        conn.execute(sa.text("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')"))
        conn.execute(sa.text(f"CREATE TABLE linked (id bigint PRIMARY KEY, owner {link})"))
        conn.execute(sa.text("INSERT INTO linked VALUES (:id, :owner)"), [
            {"id": i, "owner": None if i % 5 == 0 else owners[i % 3]} for i in range(1, 31)])
    engine.dispose()
    statements: list[str] = []
    store = SqlStore("app", postgres_url)
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda _c, _k, statement, *_: statements.append(statement))
    wanted = owners[:2]
    batch = store.sweep_batch(Sweep("linked", "id", In("owner", wanted), Delete(),
                                    selective=True, tally="owner"), None, 1000)
    store.close()
    expected = {o: sum(1 for i in range(1, 31) if i % 5 and owners[i % 3] == o)
                for o in wanted}
    assert dict(batch.tallies) == expected and batch.rows == sum(expected.values())
    deleting = [s for s in statements if "DELETE FROM" in s]
    assert deleting and all(("array_agg" in s) == (link in ("bigint", "text", "uuid"))
                            for s in deleting)


def test_a_long_lists_json_text_reads_back_as_the_list() -> None:
    """Long lists go as one JSON text (orjson; an integer past 64 bits through the
    standard library): what the database reads back is the list."""
    import json

    from lethe.stores.sql.compile import _json_list

    for listed in ([1, 2**40, -7], ["ada", 'it"s', "back\\slash", "Zürich", "\x7f"],
                   [2**70, 3]):
        assert json.loads(_json_list(listed)) == listed
