"""The `archive` action: rows to compressed JSON-lines chunks (local directory and the
loopback S3 server), verified before deletion, settled after a crash, restored."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lethe.engine.archive import ArchiveSink, archive_sink, restore
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.errors import PolicyError
from lethe.holds import parse_scope, place_hold
from lethe.policy.load import load_policy
from lethe.runtime import Runtime
from lethe.stores.objects import open_object_store
from lethe.stores.sql import normalize_url
from tests.fixtures import build_app, invoices, runtime, write_policy

RULE = {"keep": "1y", "after": "issued_at", "action": "archive", "to": "cold"}
SESSIONS_RULE = {"keep": "30d", "after": "last_seen_at", "action": "archive", "to": "cold"}


def _policy(tmp_path: Path, app_url: str, cold_url: str, **changes: Any) -> Path:
    """The test policy with a `cold` archive store; `changes` as write_policy takes them
    (default: invoices archived after a year)."""
    path = write_policy(tmp_path, app_url,
                        **(changes or {"datasets__invoices__retention": [RULE]}))
    data = yaml.safe_load(path.read_text())
    data["stores"]["cold"] = {"url": cold_url}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _rows(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(invoices).order_by(invoices.c.id))]


def _chunk_keys(cold_url: str) -> list[str]:
    store = open_object_store("cold", cold_url)
    return sorted(i.key for page in store.pages("lethe-archive/") for i in page)


def test_archive_verifies_deletes_and_restores(app_url: str, objects_url: str,
                                               tmp_path: Path) -> None:
    engine = build_app(app_url)
    before = _rows(engine)
    rt = runtime(_policy(tmp_path, app_url, objects_url))
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, "user:7", None, None),
               "case 7")
    plan = build_plan(rt, ["invoices"])
    [action] = plan.actions
    assert (action.step.action, action.rows, action.held) == ("archive", 9, 1)
    result = execute(rt, plan, batch_size=4)
    [done] = result.actions
    assert done.error is None and done.done == 9 and done.verified is True
    assert [r[0] for r in _rows(engine)] == [7]  # only the held invoice is left
    keys = _chunk_keys(objects_url)
    chunks = [k for k in keys if k.endswith(".jsonl.gz")]
    assert len(chunks) == 3 and len([k for k in keys if k.endswith(".done")]) == 3
    store = open_object_store("cold", objects_url)
    archived = [json.loads(line) for c in chunks
                for line in gzip.decompress(store.get(c)).decode().splitlines()]
    assert sorted(r["id"] for r in archived) == [1, 2, 3, 4, 5, 6, 8, 9, 10]
    written = rt.audit.entries(action="archive.written")
    assert sum(json.loads(e.details)["rows"] for e in written) == 9
    assert rt.audit.verify().ok

    restored = restore(rt, "invoices")
    assert (restored.chunks, restored.restored, restored.present) == (3, 9, 0)
    assert _rows(engine) == before  # every value, times included, as it was
    assert restore(rt, "invoices").restored == 0  # idempotent
    rt.close()
    store.close()


def test_a_write_that_fails_deletes_nothing(sqlite_url: str, tmp_path: Path) -> None:
    engine = build_app(sqlite_url)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    rt = runtime(_policy(tmp_path, sqlite_url, f"file://{blocker}"))
    result = execute(rt, build_plan(rt, ["invoices"]))
    [done] = result.actions
    assert done.error is not None and done.done == 0
    assert len(_rows(engine)) == 10
    rt.close()


def test_settle_removes_orphans_and_confirms_committed_chunks(sqlite_url: str,
                                                              tmp_path: Path) -> None:
    """The two states a kill can leave: a chunk whose rows are still there (the delete
    rolled back) and a chunk whose rows are gone but not marked done."""
    engine = build_app(sqlite_url)
    cold = f"file://{tmp_path / 'cold'}"
    rt = runtime(_policy(tmp_path, sqlite_url, cold))
    sink: ArchiveSink = archive_sink(rt, "invoices", 0)
    rows = _rows(engine)
    columns = tuple(c.name for c in invoices.columns)
    sink.write(columns, rows[:3])  # written, verified; the transaction then "died"
    sink.pending.clear()
    rt.clock = type(rt.clock)(rt.clock.now().replace(second=30))  # a later chunk name
    sink.write(columns, rows[3:5])  # written, and the rows went, but no mark
    sink.pending.clear()
    with engine.begin() as conn:
        conn.execute(sa.delete(invoices).where(invoices.c.id.in_([r[0] for r in rows[3:5]])))
    assert sink.settle() == (1, 1)
    keys = _chunk_keys(cold)
    assert len([k for k in keys if k.endswith(".jsonl.gz")]) == 1
    assert len([k for k in keys if k.endswith(".done")]) == 1
    assert restore(rt, "invoices").restored == 2
    rt.close()


def test_archive_policy_mistakes(tmp_path: Path) -> None:
    path = _policy(tmp_path, "sqlite:///app.db", "redis://127.0.0.1:6379/0")
    with pytest.raises(PolicyError, match="archives go to an object store"):
        load_policy(path)
    path = write_policy(tmp_path, "sqlite:///app.db", datasets__users__retention=[
        {"keep": "1y", "after": "closed_at", "action": "archive", "to": "cold"}])
    data = yaml.safe_load(path.read_text())
    data["stores"]["cold"] = {"url": "file://./cold"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PolicyError, match="others belong to"):
        load_policy(path)


@pytest.mark.postgres
@pytest.mark.slow
def test_killed_archive_run_loses_nothing_and_archives_nothing_twice(
        postgres_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(normalize_url(postgres_url))
    build_app(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM invoices"))
        conn.execute(sa.text(
            "INSERT INTO invoices SELECT g, 1 + g % 10, TIMESTAMPTZ '2024-01-01' + g * "
            "INTERVAL '1 second' FROM generate_series(1, 20000) g"))
    before = _rows(engine)
    cold = f"file://{tmp_path / 'cold'}"
    policy = _policy(tmp_path, postgres_url, cold)
    argv = [sys.executable, "-c", "from lethe.cli.app import main; main()", "run",
            "--policy", str(policy), "--now", "2026-06-01T00:00:00Z", "--batch-size", "250",
            "--json"]
    env = {**os.environ, "NO_COLOR": "1"}
    for _kill in range(2):  # two kills at different points, then a full run
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)
        started, left = time.monotonic(), len(_rows(engine))
        while len(_rows(engine)) > left - 2000:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() - started < 120
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    assert _rows(engine) == []  # every invoice was due
    store = open_object_store("cold", cold)
    keys = _chunk_keys(cold)
    chunks = [k for k in keys if k.endswith(".jsonl.gz")]
    assert {k[:-len(".jsonl.gz")] for k in chunks} == \
        {k[:-len(".done")] for k in keys if k.endswith(".done")}  # no orphan survives
    archived = [json.loads(line)["id"] for c in chunks
                for line in gzip.decompress(store.get(c)).decode().splitlines()]
    assert len(archived) == len(set(archived))  # nothing archived twice
    assert sorted(archived) == [r[0] for r in before]  # nothing lost
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("chunk_stored", [True, False], ids=["chunk", "manifest-only"])
def test_settle_waits_for_a_batch_still_writing_its_chunk(postgres_url: str, tmp_path: Path,
                                                          chunk_stored: bool) -> None:
    """Another process's batch holds its rows and has written its chunk (or so far only
    the manifest, which goes first): settling must wait for it, not take the chunk for
    an orphan (its rows are about to be deleted) nor drop the manifest it needs."""
    import threading

    engine = build_app(postgres_url)
    cold = f"file://{tmp_path / 'cold'}"
    rt = runtime(_policy(tmp_path, postgres_url, cold))
    writer: ArchiveSink = archive_sink(rt, "invoices", 0)
    rows = _rows(engine)[:4]
    ids = [r[0] for r in rows]
    outcome: list[tuple[int, int]] = []
    with engine.connect() as conn:
        transaction = conn.begin()
        conn.execute(sa.select(invoices).where(invoices.c.id.in_(ids)).with_for_update())
        writer.write(tuple(c.name for c in invoices.columns), rows)
        [(chunk, _, _)] = writer.pending
        data = writer.store.get(chunk + ".jsonl.gz")
        if not chunk_stored:  # as if between the manifest and the chunk
            writer.store.delete([chunk + ".jsonl.gz"])
        settler = threading.Thread(
            target=lambda: outcome.append(archive_sink(rt, "invoices", 0).settle()))
        settler.start()
        time.sleep(1.0)
        assert settler.is_alive() and not outcome  # waiting on the batch's row locks
        writer.store.put(chunk + ".jsonl.gz", data)
        conn.execute(sa.delete(invoices).where(invoices.c.id.in_(ids)))
        transaction.commit()
    settler.join(timeout=30)
    assert outcome == [(1, 0)]  # the rows went: the chunk is theirs, marked done
    keys = _chunk_keys(cold)
    assert sum(k.endswith(".jsonl.gz") for k in keys) == 1
    assert sum(k.endswith(".done") for k in keys) == 1
    assert restore(rt, "invoices").restored == 4  # manifest and chunk both there
    rt.close()


def _shared_key(app_url: str, tmp_path: Path) -> tuple[sa.Engine, Any]:
    """`key: user_id` (not unique), and a second invoice of user 3 that is not due."""
    engine = build_app(app_url)
    with engine.begin() as conn:
        conn.execute(invoices.insert().values(id=99, user_id=3,
                                              issued_at=datetime(2026, 5, 1, tzinfo=UTC)))
    path = _policy(tmp_path, app_url, f"file://{tmp_path / 'cold'}")
    data = yaml.safe_load(path.read_text())
    data["datasets"]["invoices"]["key"] = "user_id"
    path.write_text(yaml.safe_dump(data))
    return engine, runtime(path)


def _unmarked_chunk(url: str, tmp_path: Path,
                   n: int) -> tuple[sa.Engine, Any, ArchiveSink, list[tuple[Any, ...]]]:
    """The first `n` invoices written to a chunk that a kill left without its mark."""
    engine = build_app(url)
    rt = runtime(_policy(tmp_path, url, f"file://{tmp_path / 'cold'}"))
    sink = archive_sink(rt, "invoices", 0)
    rows = _rows(engine)[:n]
    sink.write(tuple(c.name for c in invoices.columns), rows)
    sink.pending.clear()
    return engine, rt, sink, rows


def test_settle_removes_a_rolled_back_chunk_even_after_the_app_changed_a_row(
        sqlite_url: str, tmp_path: Path) -> None:
    """Killed and rolled back; before the next run the application deletes one of the
    rows. The rest are still there: the chunk is an orphan."""
    engine, rt, sink, rows = _unmarked_chunk(sqlite_url, tmp_path, 4)
    with engine.begin() as conn:
        conn.execute(sa.delete(invoices).where(invoices.c.id == rows[0][0]))
    assert sink.settle() == (0, 1)
    assert not list(sink.done_chunks())
    rt.close()


def test_settle_keeps_a_committed_chunk_when_the_app_wrote_one_row_again(
        sqlite_url: str, tmp_path: Path) -> None:
    """Committed, killed before its mark; then the application inserts one of the
    archived rows again, identical. The chunk is still the only copy of the others."""
    engine, rt, sink, rows = _unmarked_chunk(sqlite_url, tmp_path, 3)
    with engine.begin() as conn:
        conn.execute(sa.delete(invoices).where(invoices.c.id.in_([r[0] for r in rows])))
        conn.execute(invoices.insert().values(dict(zip(
            [c.name for c in invoices.columns], rows[0], strict=True))))
    assert sink.settle() == (1, 0)  # marked done, not removed
    [(chunk, _)] = list(sink.done_chunks())
    assert sorted(r["id"] for r in decode_rows_of(sink, chunk)) == sorted(r[0] for r in rows)
    rt.close()


def test_times_compare_as_instants_whatever_their_offset() -> None:
    from lethe.stores.archive_format import comparable_line as _comparable

    utc = json.dumps({"at": "2025-04-27T10:00:00+00:00", "id": 1, "note": "2025"})
    paris = json.dumps({"at": "2025-04-27T12:00:00+02:00", "id": 1, "note": "2025"})
    later = json.dumps({"at": "2025-04-27T12:00:00+00:00", "id": 1, "note": "2025"})
    assert _comparable(utc) == _comparable(paris) != _comparable(later)


def test_a_shared_key_deletes_only_what_was_archived(sqlite_url: str, tmp_path: Path) -> None:
    """`key: user_id` is not unique: deleting by the key alone would take rows never
    archived; the selection goes with it."""
    engine, rt = _shared_key(sqlite_url, tmp_path)
    [done] = execute(rt, build_plan(rt, ["invoices"])).actions
    rt.close()
    assert done.error is None and done.done == 10
    assert {r[0] for r in _rows(engine)} == {99}  # the invoice that was not due stays


def _shared_key_sink(app_url: str, tmp_path: Path) -> tuple[sa.Engine, Any, ArchiveSink]:
    engine, rt = _shared_key(app_url, tmp_path)
    return engine, rt, archive_sink(rt, "invoices", 0)


def test_settle_keeps_a_committed_chunk_whose_key_another_row_shares(
        app_url: str, tmp_path: Path) -> None:
    """Killed after the batch committed, before its chunk was marked done: the chunk is
    the archived rows' only copy. User 3's invoice that was not due shares their key;
    taking that for "the rows are still there" would delete the chunk, and the rows."""
    engine, rt, sink = _shared_key_sink(app_url, tmp_path)
    columns = tuple(c.name for c in invoices.columns)
    archived = [r for r in _rows(engine) if r[1] in (2, 3, 4) and r[0] != 99]
    sink.write(columns, archived)
    sink.pending.clear()
    with engine.begin() as conn:  # the batch's delete committed; then the kill
        conn.execute(sa.delete(invoices).where(invoices.c.id.in_([r[0] for r in archived])))
    assert sink.settle() == (1, 0)  # marked done, not removed
    [(chunk, _)] = list(sink.done_chunks())
    assert sorted(r["id"] for r in decode_rows_of(sink, chunk)) == [2, 3, 4]
    rt.close()


def test_settle_removes_a_rolled_back_chunk_whose_key_another_row_shares(
        app_url: str, tmp_path: Path) -> None:
    engine, rt, sink = _shared_key_sink(app_url, tmp_path)
    columns = tuple(c.name for c in invoices.columns)
    sink.write(columns, [r for r in _rows(engine) if r[1] == 3 and r[0] != 99])
    sink.pending.clear()  # the batch rolled back: its rows are all still there
    assert sink.settle() == (0, 1)
    assert not [k for k in _chunk_keys(f"file://{tmp_path / 'cold'}")
                if k.endswith(".jsonl.gz")]
    assert len(_rows(engine)) == 11
    rt.close()


def test_line_separators_inside_values_survive_archiving(sqlite_url: str,
                                                         tmp_path: Path) -> None:
    from lethe.stores.archive_format import decode_rows, encode_rows

    rows = [(1, "line\u2028separator\u0085next"), (2, "plain")]
    assert decode_rows(encode_rows(("id", "note"), rows)) == [
        {"id": 1, "note": "line\u2028separator\u0085next"}, {"id": 2, "note": "plain"}]


def _sessions_archived(app_url: str, tmp_path: Path) -> tuple[Runtime, str]:
    """The app with one old session per user archived (10 rows, one chunk) by an
    archive run; the runtime and the archive store's URL."""
    build_app(app_url)
    cold = f"file://{tmp_path / 'cold'}"
    path = _policy(tmp_path, app_url, cold, datasets__users__soft_delete=None,
                   datasets__users__retention=[], datasets__sessions__retention=[SESSIONS_RULE])
    rt = runtime(path)
    [archived] = [a for a in execute(rt, build_plan(rt, ["sessions"])).actions]
    assert archived.done == 10  # one old session per user went to the archive
    return rt, cold


def _archived_ids(cold_url: str) -> list[int]:
    """The ids of the rows in every chunk of the archive store."""
    store = open_object_store("cold", cold_url)
    return sorted(json.loads(line)["id"] for c in _chunk_keys(cold_url)
                  if c.endswith(".jsonl.gz")
                  for line in gzip.decompress(store.get(c)).decode().split("\n") if line)


def test_erasure_reaches_archived_rows_and_holds_keep_them(app_url: str,
                                                          tmp_path: Path) -> None:
    """A subject's rows an archive rule moved out are erased from the chunks too; the
    other subjects' archived rows stay, and a held subject's stay."""
    from lethe.requests.service import open_request, run_request
    from tests.fixtures import sessions

    rt, cold = _sessions_archived(app_url, tmp_path)

    def archived_sessions() -> list[int]:
        return _archived_ids(cold)

    assert archived_sessions() == [i * 10 for i in range(1, 11)]
    outcome = run_request(rt, open_request(rt, "erasure", "user", ["id=3"]).id,
                          tmp_path / "out")
    assert outcome.record.status == "completed"
    assert outcome.as_dict()["datasets"]["sessions"]["erased"] == 2  # live + archived
    assert archived_sessions() == [i * 10 for i in range(1, 11) if i != 3]
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, "user:5", None, None),
               "case 5")
    held = run_request(rt, open_request(rt, "erasure", "user", ["id=5"]).id, tmp_path / "out")
    assert held.record.status == "in_progress"
    assert 50 in archived_sessions()
    assert restore(rt, "sessions").restored == 9  # the erased subject does not come back
    with sa.create_engine(normalize_url(app_url)).connect() as conn:
        back = set(conn.execute(sa.select(sessions.c.id)).scalars())
    assert 30 not in back and 50 in back
    rt.close()


def test_restore_skips_a_chunk_an_interrupted_erasure_replaced(sqlite_url: str,
                                                              tmp_path: Path) -> None:
    """Killed after the replacement chunk was done but before the original went: the
    original still holds the erased row; restoring must not bring it back."""
    engine = build_app(sqlite_url)
    cold = f"file://{tmp_path / 'cold'}"
    rt = runtime(_policy(tmp_path, sqlite_url, cold))
    execute(rt, build_plan(rt, ["invoices"]), batch_size=100)  # one chunk of 10 invoices
    sink = archive_sink(rt, "invoices", 0)
    [(original, manifest)] = list(sink.done_chunks())
    columns = tuple(str(c) for c in manifest["columns"])
    kept = [r for r in decode_rows_of(sink, original) if r["id"] != 3]
    sink.write(columns, [tuple(r[c] for c in columns) for r in kept], replaces=original)
    sink.committed()  # ... and the erasure died here, before deleting the original
    restored = restore(rt, "invoices")
    assert (restored.chunks, restored.restored) == (1, 9)
    assert 3 not in {r[0] for r in _rows(engine)}
    rt.close()


def decode_rows_of(sink: ArchiveSink, chunk: str) -> list[dict[str, Any]]:
    from lethe.stores.archive_format import decode_rows

    return decode_rows(sink.store.get(chunk + ".jsonl.gz"))


def test_erasure_reaches_archived_rows_of_a_dataset_with_two_parents(
        sqlite_url: str, tmp_path: Path) -> None:
    """Sessions that belong to the subject and to another dataset: their archive column is
    the link to the subject, and the erasure takes the subject's rows out of the chunks."""
    from lethe.requests.service import open_request, run_request

    build_app(sqlite_url)
    cold = f"file://{tmp_path / 'cold'}"
    path = _policy(tmp_path, sqlite_url, cold, datasets__users__soft_delete=None,
                   datasets__users__retention=[],
                   datasets__sessions__belongs_to={"users": "user_id", "invoices": "id"},
                   datasets__sessions__retention=[SESSIONS_RULE])
    rt = runtime(path)
    execute(rt, build_plan(rt, ["sessions"]))
    outcome = run_request(rt, open_request(rt, "erasure", "user", ["id=3"]).id,
                          tmp_path / "out")
    rt.close()
    store = open_object_store("cold", cold)
    left = sorted(json.loads(line)["id"] for c in _chunk_keys(cold) if c.endswith(".jsonl.gz")
                  for line in gzip.decompress(store.get(c)).decode().split("\n") if line)
    assert outcome.record.status == "completed"
    assert left == [i * 10 for i in range(1, 11) if i != 3]


def test_an_erasure_waits_for_a_chunk_a_killed_archive_run_left_unmarked(
        app_url: str, tmp_path: Path) -> None:
    """An archive run killed after its batch committed but before the chunk's `.done`
    mark leaves the rows' only copy unmarked. An erasure of a subject whose rows such a
    chunk may hold waits (its request stays open, saying why) instead of certifying rows
    erased that the chunk still holds; once the next archive run has settled the chunk,
    the erasure takes the archived row out and counts it."""
    from lethe.requests.service import open_request, run_request

    rt, cold = _sessions_archived(app_url, tmp_path)
    sink = archive_sink(rt, "sessions", 0)
    [(chunk, manifest)] = list(sink.done_chunks())
    assert 3 in manifest["links"]["user_id"]
    # killed between the batch's commit and its mark
    open_object_store("cold", cold).delete([chunk + ".done"])

    def archived_sessions() -> list[int]:
        return _archived_ids(cold)

    request = open_request(rt, "erasure", "user", ["id=3"]).id
    waiting = run_request(rt, request, tmp_path / "out")
    assert waiting.record.status == "in_progress"
    assert (waiting.record.note or "").startswith("waiting at sessions: ")
    assert "unsettled" in (waiting.record.note or "")
    assert 30 in archived_sessions()  # nothing certified, the chunk untouched
    unread = restore(rt, "sessions")  # a restore reads it only once settled, and says so
    assert (unread.chunks, unread.restored, unread.unsettled) == (0, 0, 1)
    assert execute(rt, build_plan(rt, ["sessions"])).ok  # the next archive run settles
    done = run_request(rt, request, tmp_path / "out")
    assert done.record.status == "completed"
    assert done.as_dict()["datasets"]["sessions"]["erased"] == 2  # live + archived
    assert archived_sessions() == [i * 10 for i in range(1, 11) if i != 3]
    rt.close()


def test_a_replacement_an_erasure_left_unmarked_never_brings_rows_back(
        app_url: str, tmp_path: Path) -> None:
    """An erasure killed after writing a chunk's replacement, before marking it, leaves
    an unmarked chunk naming the one it `replaces`. Another subject's erasure then
    replaces and deletes the original; the next archive run's settle must neither mark
    the leftover (it still holds that subject's row and a second copy of everyone
    else's) nor count it as unsettled, and a restore must not bring the row back."""
    from lethe.requests.service import open_request, run_request
    from lethe.stores.archive_format import decode_rows

    rt, cold = _sessions_archived(app_url, tmp_path)
    sink = archive_sink(rt, "sessions", 0)
    [(chunk, manifest)] = list(sink.done_chunks())
    columns = tuple(str(c) for c in manifest["columns"])
    kept = [tuple(r.get(c) for c in columns)
            for r in decode_rows(open_object_store("cold", cold).get(chunk + ".jsonl.gz"))
            if r.get("user_id") != 3]
    rt.clock = type(rt.clock)(rt.clock.now().replace(second=30))  # a later chunk name
    sink.write(columns, kept, replaces=chunk)  # user 3's erasure, killed before the mark
    sink.pending.clear()
    done = run_request(rt, open_request(rt, "erasure", "user", ["id=5"]).id,
                       tmp_path / "out")
    assert done.record.status == "completed"  # the leftover is not waited for
    assert execute(rt, build_plan(rt, ["sessions"])).ok  # settles
    store = open_object_store("cold", cold)
    marked = sorted(r["id"] for c, _ in archive_sink(rt, "sessions", 0).done_chunks()
                    for r in decode_rows(store.get(c + ".jsonl.gz")))
    assert marked == [i * 10 for i in range(1, 11) if i != 5]  # once each, 50 gone
    restored = restore(rt, "sessions")
    with sa.create_engine(normalize_url(app_url)).connect() as conn:
        back = set(conn.execute(sa.text("SELECT id FROM sessions")).scalars())
    assert 50 not in back and restored.restored == 9 and restored.present == 0
    rt.close()
