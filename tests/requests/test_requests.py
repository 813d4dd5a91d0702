"""Data-subject requests end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lethe.clock import Clock
from lethe.control.requests import RequestRecord, RequestStore
from lethe.errors import UsageError
from lethe.holds import parse_scope, place_hold, release_hold
from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.requests.export import verify_access_export
from lethe.requests.records import RequestOutcome
from lethe.requests.service import (
    open_bulk,
    open_request,
    overdue,
    run_request,
    stored_certificate,
)
from lethe.runtime import Runtime
from tests.fixtures import (
    NOW,
    build_app,
    ids,
    invoices,
    profiles,
    runtime,
    sessions,
    users,
    write_policy,
)

EMAIL = "user7@example.com"  # user 7: two sessions, one invoice, one profile


def test_access_exports_every_linked_row_and_forgets_the_identity(app_url: str,
                                                                  tmp_path: Path) -> None:
    build_app(app_url)
    rt = runtime(write_policy(tmp_path, app_url))
    record = open_request(rt, "access", "user", [f"email={EMAIL}"])
    outcome = run_request(rt, record.id, tmp_path / "out")
    assert outcome.record.status == "completed"
    assert outcome.export is not None and verify_access_export(outcome.export) == (True, None)
    with zipfile.ZipFile(outcome.export) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        user_rows = json.loads(archive.read("users.json"))
        session_rows = json.loads(archive.read("sessions.json"))
    assert manifest["datasets"] == {"sessions": 2, "invoices": 1, "profiles": 1, "users": 1}
    assert [u["email"] for u in user_rows] == [EMAIL]
    assert sorted(s["id"] for s in session_rows) == [70, 71]
    assert RequestStore(rt.control.engine).get(record.id).identities == {}
    actions = [e.action for e in rt.audit.entries(target=f"request:{record.id}")]
    assert actions[:3] == ["request.received", "request.verified", "request.in_progress"]
    assert actions.count("request.exported") == 4 and actions[-1] == "request.completed"
    assert EMAIL not in json.dumps([e.as_dict() for e in rt.audit.entries()])
    rt.close()


def test_erasure_soft_deletes_then_erases_and_certifies(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    rt = runtime(policy)
    record = open_request(rt, "erasure", "user", [f"email={EMAIL}", "id=7"])
    first = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert first.record.status == "in_progress" and first.record.note
    assert "recoverable until" in first.record.note
    assert ids(engine, users, users.c.deleted_at.is_not(None)) == {6, 7}  # 6 was already
    assert {70, 71} <= ids(engine, sessions)  # nothing else touched during the window

    rt = runtime(policy, NOW + timedelta(days=10))
    early = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert early.record.status == "in_progress" and 7 in ids(engine, users)

    rt = runtime(policy, NOW + timedelta(days=31))
    done = run_request(rt, record.id, tmp_path / "out")
    assert done.record.status == "completed"
    assert rt.audit.verify().ok
    # the erasing run wrote one entry for every dataset, and the certificate cites it
    entries = rt.audit.entries(target=f"request:{record.id}")
    erased = [e for e in entries if e.action == "request.erased"]
    # transitions build the record they return instead of reading it back: same record
    assert done.record == RequestStore(rt.control.engine).get(record.id)
    assert done.record.identities == {} and done.record.result == done.result()
    rt.close()
    assert len(erased) == 1
    steps = json.loads(erased[0].details)["datasets"]
    assert steps["sessions"] == {"rows": 2, "done": 2, "retained": 0, "held": 0,
                                 "action": "delete"}
    assert steps["invoices"]["action"] == "retain" and steps["invoices"]["retained"] == 1
    assert set(steps) == set(done.datasets)
    assert 7 not in ids(engine, users)
    assert {70, 71} & ids(engine, sessions) == set()
    assert 7 in ids(engine, invoices)  # retained: tax law
    with engine.connect() as conn:
        profile = conn.execute(sa.select(profiles).where(profiles.c.id == 7)).one()
    assert (profile.bio, profile.phone) == ("[redacted]", None)
    summary = done.as_dict()["datasets"]
    assert summary["sessions"] == {"rows": 2, "erased": 2, "retained": 0, "held": 0}
    assert summary["invoices"] == {"rows": 1, "erased": 0, "retained": 1, "held": 0}
    assert summary["users"]["erased"] == 1
    assert done.certificate is not None
    document = load_certificate(done.certificate)
    assert verify_certificate(document).ok
    invoice = next(d for d in document["certificate"]["datasets"] if d["dataset"] == "invoices")
    assert invoice["legal_basis"] == "tax law: 7 years"
    text = done.certificate.read_text() + done.certificate.with_suffix(".html").read_text()
    assert EMAIL not in text
    cited = {(e["seq"], e["hash"]) for e in document["certificate"]["evidence"]["audit_entries"]}
    assert cited == {(e.seq, e.hash) for e in entries if e.action != "request.completed"}


def _soft_deleted_and_past_the_window(url: str, tmp_path: Path
                                      ) -> tuple[sa.Engine, Runtime, RequestRecord]:
    """User 7's erasure after its first run soft-deleted them, with a runtime whose clock
    is past the recovery window: the next run erases."""
    engine = build_app(url)
    policy = write_policy(tmp_path, url)
    rt = runtime(policy)
    record = open_request(rt, "erasure", "user", [f"email={EMAIL}"])
    run_request(rt, record.id, tmp_path / "out")
    rt.close()
    return engine, runtime(policy, NOW + timedelta(days=31)), record


def _refuse_deletes(engine: sa.Engine, table: str, *, refuse: bool,
                    only: int | None = None) -> None:
    """A trigger that makes the database refuse deletes from `table` (of the row whose
    id is `only`, if given), or drops it."""
    sqlite = engine.dialect.name == "sqlite"
    when = "" if only is None else (f" WHEN OLD.id = {only}" if sqlite
                                     else f" FOR EACH ROW WHEN (OLD.id = {only})")
    with engine.begin() as conn:
        if sqlite:
            conn.execute(sa.text(
                f"CREATE TRIGGER refuse BEFORE DELETE ON {table}{when} "
                "BEGIN SELECT RAISE(ABORT, 'deletes refused'); END" if refuse
                else "DROP TRIGGER refuse"))
        elif refuse:
            conn.execute(sa.text("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql "
                                 "AS $$ BEGIN RAISE EXCEPTION 'deletes refused'; END $$"))
            conn.execute(sa.text(f"CREATE TRIGGER refuse BEFORE DELETE ON {table}"
                                 f"{when or ' FOR EACH ROW'} EXECUTE FUNCTION refuse()"))
        else:
            conn.execute(sa.text(f"DROP TRIGGER refuse ON {table}"))


def test_a_bulk_run_goes_on_past_a_group_a_store_stops(app_url: str, tmp_path: Path) -> None:
    """One subject's group fails (the database refuses to delete its row): that request
    stays open and says why; the other groups complete."""
    from lethe.requests.service import run_many

    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    rt = runtime(policy)
    records = [open_request(rt, "erasure", "user", [f"email=user{i}@example.com"])
               for i in (2, 3, 5)]
    run_many(rt, [r.id for r in records], tmp_path / "out", group_size=1)
    rt.close()
    _refuse_deletes(engine, "users", refuse=True, only=3)
    rt = runtime(policy, NOW + timedelta(days=31))
    done = run_many(rt, [r.id for r in records], tmp_path / "out", group_size=1)
    rt.close()
    assert [o.record.status for o in done] == ["completed", "in_progress", "completed"]
    assert [o.error is not None for o in done] == [False, True, False]
    assert ids(engine, users, users.c.id.in_([2, 3, 5])) == {3}


def test_an_erasure_failing_midway_audits_what_it_did_and_the_next_run_finishes(
        app_url: str, tmp_path: Path) -> None:
    """The database refuses to delete the subject row: the request stays in_progress and
    says where and why, its `request.erased` entry lists what the run did and the dataset
    that failed, nothing is certified, and `request run` exits 1 (not 2: nothing was wrong
    with the command). Once the cause is gone the next run completes, and its certificate
    counts what the failed run erased.

    On PostgreSQL a lone subject's small erasure deletes its datasets' rows in one
    statement (`SqlStore.first_batches`; the profile's anonymization, by constants, in
    it too): the refusal undoes it whole, and the request stops at the first of them,
    with nothing erased and nothing rewritten."""
    engine, rt, record = _soft_deleted_and_past_the_window(app_url, tmp_path)
    together = app_url.startswith("postgresql")
    stopped_at = "profiles" if together else "users"
    with engine.connect() as conn:
        profile = conn.execute(sa.select(profiles).where(profiles.c.id == 7)).one()
    _refuse_deletes(engine, "users", refuse=True)
    stopped = run_request(rt, record.id, tmp_path / "out")
    assert stopped.error is not None and stopped.record.status == "in_progress"
    assert stopped.record.note is not None and \
        stopped.record.note.startswith(f"stopped at {stopped_at}:")
    assert "users" in stopped.record.note  # the statement that failed names it
    assert not stopped.certified and stored_certificate(rt, record.id) is None
    [first] = [json.loads(e.details)["datasets"]
               for e in rt.audit.entries(target=f"request:{record.id}")
               if e.action == "request.erased"]
    assert set(first[stopped_at]) == {"error"}
    if together:
        assert {70, 71} <= ids(engine, sessions) and "users" not in first
        with engine.connect() as conn:
            assert conn.execute(sa.select(profiles).where(profiles.c.id == 7)).one() == profile
    else:
        assert first["sessions"]["done"] == 2
        assert {70, 71} & ids(engine, sessions) == set()
    assert 7 in ids(engine, users)
    policy = tmp_path / "lethe.yaml"
    cli = subprocess.run(
        [sys.executable, "-c", "from lethe.cli.app import main; main()", "request", "run",
         str(record.id), "--policy", str(policy), "--now",
         (NOW + timedelta(days=31)).isoformat(), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert cli.returncode == 1, cli.stderr
    # (a rerun has its baselines: each dataset goes on its own, and sessions go first)
    assert "Traceback" not in cli.stderr and "stopped at users" in cli.stdout
    _refuse_deletes(engine, "users", refuse=False)
    done = run_request(rt, record.id, tmp_path / "out")
    second = [json.loads(e.details)["datasets"]
              for e in rt.audit.entries(target=f"request:{record.id}")
              if e.action == "request.erased"][-1]
    assert rt.audit.verify().ok
    rt.close()
    assert done.error is None
    assert done.record.status == "completed" and 7 not in ids(engine, users)
    # the certificate counts the sessions the failed run erased (from the baseline)
    assert done.as_dict()["datasets"]["sessions"] == {"rows": 2, "erased": 2, "retained": 0,
                                                      "held": 0}
    assert second["sessions"] == {"rows": 2, "done": 0, "retained": 0, "held": 0,
                                  "action": "delete"}


def test_completion_is_all_or_nothing(app_url: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's `request.erased` entry, the signed checkpoint, the certificate kept,
    the request completed and audited, the baselines cleared: one transaction. A
    failure at its last step leaves none of it (on the old code the entry and the
    checkpoint had committed before); the rerun completes, its certificate citing its
    own entry under a checkpoint."""
    from lethe.control.requests import RequestStore as Store
    from lethe.errors import StoreError
    from lethe.requests.service import stored_certificate

    _, rt, record = _soft_deleted_and_past_the_window(app_url, tmp_path)
    checkpoints = len(rt.audit.checkpoints())
    clear = Store.clear_baselines

    def failing(self: Store, ids: list[int], **kwargs: Any) -> None:
        clear(self, ids, **kwargs)
        raise StoreError("the control store went away", path="control")

    monkeypatch.setattr(Store, "clear_baselines", failing)
    with pytest.raises(StoreError, match="went away"):
        run_request(rt, record.id, tmp_path / "out")
    assert RequestStore(rt.control.engine).get(record.id).status == "in_progress"
    # no file signs evidence the log does not have (they are written after the commit)
    assert not list((tmp_path / "out").glob(f"request-{record.id}-certificate.*"))
    assert stored_certificate(rt, record.id) is None
    assert RequestStore(rt.control.engine).baselines([record.id])  # still there
    actions = [e.action for e in rt.audit.entries(target=f"request:{record.id}")]
    assert "request.completed" not in actions and "request.erased" not in actions
    assert len(rt.audit.checkpoints()) == checkpoints
    monkeypatch.setattr(Store, "clear_baselines", clear)
    done = run_request(rt, record.id, tmp_path / "out")
    assert done.record.status == "completed" and stored_certificate(rt, record.id)
    certificate = stored_certificate(rt, record.id)
    assert certificate is not None
    erased = [e for e in rt.audit.entries(target=f"request:{record.id}")
              if e.action == "request.erased"]
    assert len(erased) == 1
    evidence = certificate["certificate"]["evidence"]
    assert {"seq": erased[0].seq, "hash": erased[0].hash} in evidence["audit_entries"]
    assert evidence["checkpoint"]["seq"] >= erased[0].seq
    # a process killed between the completion's commit and the files: the next run of
    # the (completed) request writes them from the kept certificate
    assert done.certificate is not None and done.certificate.exists()
    for written in (tmp_path / "out").glob(f"request-{record.id}-certificate.*"):
        written.unlink()
    again = run_request(rt, record.id, tmp_path / "out")
    assert again.certificate == done.certificate and done.certificate.exists()
    assert load_certificate(done.certificate) == certificate
    assert verify_certificate(load_certificate(done.certificate)).ok
    html = done.certificate.with_suffix(".html")  # killed between the two files
    html.unlink()
    run_request(rt, record.id, tmp_path / "out")
    assert html.exists()
    assert not RequestStore(rt.control.engine).baselines([record.id])
    assert rt.audit.verify().ok
    rt.close()


def test_counts_that_cannot_be_certified_still_leave_the_run_audited(
        app_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A certificate whose counts do not add up is refused before the completing
    transaction; the run's deletions still get their `request.erased` entry, and the
    request stays open. Failed on a first version of the one completing transaction,
    where the entry went with the refused certificate."""
    from lethe.errors import LetheError

    engine, rt, record = _soft_deleted_and_past_the_window(app_url, tmp_path)
    monkeypatch.setattr("lethe.requests.certificate._dataset_problem",
                        lambda _dataset: "rows do not add up")
    with pytest.raises(LetheError, match="cannot certify"):
        run_request(rt, record.id, tmp_path / "out")
    actions = [e.action for e in rt.audit.entries(target=f"request:{record.id}")]
    assert actions[-1] == "request.erased", actions
    assert RequestStore(rt.control.engine).get(record.id).status == "in_progress"
    assert stored_certificate(rt, record.id) is None
    assert 7 not in ids(engine, users)  # the deletions it audits
    rt.close()


@pytest.mark.postgres
@pytest.mark.parametrize("batch_size", [None, 1])
def test_erasure_commits_without_waiting_then_flushes_before_auditing(
        postgres_url: str, tmp_path: Path, batch_size: int | None) -> None:
    """The sweeps' commits do not wait for PostgreSQL's log (a flush each was a tenth of
    a bulk erasure); one synchronous flush makes them durable before `request.erased`
    is written, so nothing audited or certified can be undone by a database crash. A
    lone subject's erasure that is one statement (default batch size) commits it
    waiting for the log instead: its last write, made durable with everything before it,
    and no flush left to do. With batches of one row, every dataset goes on its own,
    each batch without waiting, and the flush follows the last."""
    _, rt, record = _soft_deleted_and_past_the_window(postgres_url, tmp_path)
    options = {} if batch_size is None else {"batch_size": batch_size}
    done, seen = _run_seeing_statements(rt, record, tmp_path / "out", **options)
    assert done.record.status == "completed"
    writes = [i for i, s in enumerate(seen) if s.startswith("postgresql:")
              and ("DELETE FROM" in s or "UPDATE " in s)]
    flushes = [i for i, s in enumerate(seen) if s.startswith(
        "postgresql: SELECT set_config('synchronous_commit', 'on', true), txid_current(),"
        " txid_status(")]
    audited = [i for i, s in enumerate(seen)
               if s.startswith("sqlite: INSERT INTO lethe_audit")]
    first_entry = min(a for a in audited if a > max(writes))
    if batch_size is None:  # one statement, durable: no flush
        assert len(writes) == 1 and not flushes, seen
        assert "set_config('synchronous_commit', 'off'" not in seen[writes[0]]
        assert "AS lethe_sync" in seen[writes[0]] and writes[0] < first_entry
        return
    # no entry is written between the last write and the flush
    assert len(writes) > 3 and max(writes) < flushes[-1] < first_entry
    # each write turns the synchronous commit off for its transaction, or its
    # transaction began with the statement that did
    for i in writes:
        began = next(seen[j] for j in range(i, -1, -1)
                     if "set_config" in seen[j] or seen[j].endswith("BEGIN"))
        assert "set_config('synchronous_commit', 'off'" in began \
            or "AS lethe_sync" in began, (seen[i], began)  # (bound, in a one-statement batch)


@pytest.mark.postgres
def test_each_dataset_of_an_erasure_is_one_statement_even_with_no_rows_of_the_subject(
        postgres_url: str, tmp_path: Path) -> None:
    """Issue 20: a selective delete batch is one round trip whether or not the subject
    has rows in the dataset (many datasets hold none of a given subject): the window,
    the DELETE and what the batch tells are one statement that always answers."""
    engine, rt, record = _soft_deleted_and_past_the_window(postgres_url, tmp_path)
    with engine.begin() as conn:  # user 7 keeps no session: that sweep finds nothing
        conn.execute(sa.text("DELETE FROM sessions WHERE user_id = 7"))
    before = {t: _count(engine, t) for t in ("sessions", "users", "invoices")}
    done, logged = _run_seeing_statements(rt, record, tmp_path / "out")
    seen = [s.removeprefix("postgresql: ") for s in logged if s.startswith("postgresql: ")]
    assert done.record.status == "completed"
    assert done.datasets["sessions"].rows == 0 and done.datasets["users"].erased == 1
    deletes = [s for s in seen if "DELETE FROM" in s]
    assert [s for s in deletes if "DELETE FROM sessions" in s] and all(
        "lethe_found" in s for s in deletes)
    # no second look at the deleted datasets: no window SELECT of their keys after it
    # (an anonymizing sweep, which rewrites rows, still takes the two-statement path)
    looked = [s for s in seen if s.startswith("SELECT anon_1.k0")]
    assert not [s for s in looked if "FROM sessions" in s or "FROM users" in s], looked
    assert _count(engine, "users") == before["users"] - 1
    assert _count(engine, "invoices") == before["invoices"]  # retained


def _run_seeing_statements(rt: Runtime, record: RequestRecord, out: Path, **options: Any
                           ) -> tuple[RequestOutcome, list[str]]:
    """Run the request and close the runtime; the statements sent to every database,
    each as "dialect: statement" on one line."""
    seen: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(f"{conn.dialect.name}: {' '.join(statement.split())}")

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", log)
    try:
        done = run_request(rt, record.id, out, **options)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", log)
    rt.close()
    return done, seen


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.mark.postgres
def test_a_flush_refuses_when_the_server_lost_the_last_batch(postgres_url: str) -> None:
    """After a crash the pool reconnects quietly; commits that never reached the log are
    gone. `flush` checks the last unflushed batch's transaction on the server as it is
    now, and raises instead of letting the erasure be audited."""
    from lethe.errors import StoreError
    from lethe.stores.sql import SqlStore

    store = SqlStore("app", postgres_url)
    with store.engine.connect() as conn:
        rolled_back = int(conn.execute(sa.text("SELECT txid_current()")).scalar_one())
        conn.rollback()  # as a commit lost in a crash reads afterwards: aborted
        with conn.begin():
            committed = int(conn.execute(sa.text("SELECT txid_current()")).scalar_one())
    for lost in (rolled_back, committed + 10**9):  # aborted; never seen (log lost)
        store._unflushed.xid = lost
        with pytest.raises(StoreError, match="lost its last deletions"):
            store.flush()
    store._unflushed.xid = committed
    store._unflushed.started = datetime(2000, 1, 1, tzinfo=UTC)  # a server since restarted
    with pytest.raises(StoreError, match="lost its last deletions"):
        store.flush()  # its id may have been handed out again: not taken as proof
    with store.engine.connect() as conn:
        store._unflushed.started = conn.execute(
            sa.text("SELECT pg_postmaster_start_time()")).scalar_one()
    store.flush()  # durable: no error, and nothing left to check
    assert store._unflushed.xid is None
    store.flush()
    store.close()


def test_held_subject_stays_open_naming_the_hold(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    rt = runtime(policy, NOW + timedelta(days=60))
    record = open_request(rt, "erasure", "user", [f"email={EMAIL}"])
    run_request(rt, record.id, tmp_path / "out")  # soft-delete
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=100))
    hold_id = place_hold(rt.control, rt.audit, rt.clock,
                         parse_scope(rt.policy, f"user:{EMAIL}", None, None), "case 12")
    held = run_request(rt, record.id, tmp_path / "out")
    assert held.record.status == "in_progress"
    assert held.record.note is not None and f"hold {hold_id}" in held.record.note
    assert held.certificate is None
    assert 7 in ids(engine, users) and {70, 71} <= ids(engine, sessions)
    release_hold(rt.control, rt.audit, rt.clock, hold_id, "case closed")
    finished = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert finished.record.status == "completed"
    assert 7 not in ids(engine, users)


def test_bulk_requests_from_csv_are_idempotent(app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    rt = runtime(write_policy(tmp_path, app_url))
    csv_path = tmp_path / "subjects.csv"
    csv_path.write_text("email,id\nuser1@example.com,1\nuser2@example.com,\n,3\n")
    first = open_bulk(rt, "access", "user", csv_path)
    again = open_bulk(rt, "access", "user", csv_path)
    assert [r.id for r in first] == [r.id for r in again] and len(first) == 3
    assert all(r.status == "received" for r in first)
    rt.close()


def test_overdue_and_bad_identities(sqlite_url: str, tmp_path: Path) -> None:
    build_app(sqlite_url)
    rt = runtime(write_policy(tmp_path, sqlite_url))
    record = open_request(rt, "access", "user", ["id=1"])
    assert record.due_at - record.received_at == timedelta(days=30)
    assert not overdue(record, record.received_at + timedelta(days=29))
    assert overdue(record, record.received_at + timedelta(days=31))
    for pairs, words in [(["phone=1"], "not an identity"), (["email"], "NAME=VALUE"),
                         ([], "at least one")]:
        with pytest.raises(UsageError, match=words):
            open_request(rt, "erasure", "user", pairs)
    with pytest.raises(UsageError, match="unknown subject kind"):
        open_request(rt, "erasure", "robot", ["id=1"])
    rt.close()


def test_hold_placed_between_phases_is_honoured(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    rt = runtime(policy)
    record = open_request(rt, "erasure", "user", ["id=7"])
    run_request(rt, record.id, tmp_path / "out")
    place_hold(rt.control, rt.audit, Clock(NOW), parse_scope(rt.policy, None, None, "sessions"),
               "litigation")
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=31))
    outcome = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert outcome.record.status == "in_progress"
    assert outcome.as_dict()["datasets"]["sessions"]["held"] == 2
    assert {70, 71} <= ids(engine, sessions)
    assert 7 in ids(engine, users)  # its sessions are held, so the user stays too


def test_rejected_request_forgets_identities_and_cannot_move_on(sqlite_url: str,
                                                                 tmp_path: Path) -> None:
    from lethe.errors import LetheError
    from lethe.requests.service import reject, transition

    build_app(sqlite_url)
    rt = runtime(write_policy(tmp_path, sqlite_url))
    record = open_request(rt, "erasure", "user", [f"email={EMAIL}"])
    rejected = reject(rt, record.id, "identity not verified")
    assert (rejected.status, rejected.note, rejected.identities) == (
        "rejected", "identity not verified", {})
    with pytest.raises(LetheError, match="cannot go from rejected"):
        transition(rt, rejected, "completed")
    assert run_request(rt, record.id, tmp_path / "out").record.status == "rejected"
    actions = [e.action for e in rt.audit.entries(target=f"request:{record.id}")]
    assert actions == ["request.received", "request.rejected"]
    rt.close()


def test_the_runs_entry_is_certified_in_the_transaction_that_writes_it(
        app_url: str, tmp_path: Path) -> None:
    """A completed erasure's `request.erased` entry, the evidence read and the signed
    checkpoint that covers it commit together: one control-store transaction where
    there were three (each a commit waited on the disk). Failed on the old code."""
    from sqlalchemy import event

    _, rt, record = _soft_deleted_and_past_the_window(app_url, tmp_path)
    current: list[str] = []
    committed: list[list[str]] = []

    def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        current.append(" ".join(text.split())[:40])

    def commit(_conn: Any) -> None:
        committed.append(current[:])
        current.clear()

    event.listen(rt.control.engine, "before_cursor_execute", statement)
    event.listen(rt.control.engine, "commit", commit)
    try:
        done = run_request(rt, record.id, tmp_path / "out")
    finally:
        event.remove(rt.control.engine, "before_cursor_execute", statement)
        event.remove(rt.control.engine, "commit", commit)
    erased = [e for e in rt.audit.entries(target=f"request:{record.id}")
              if e.action == "request.erased"][-1]
    certificate = load_certificate(done.certificate) if done.certificate else None
    rt.close()
    assert done.record.status == "completed" and certificate is not None
    evidence = certificate["certificate"]["evidence"]
    assert {"seq": erased.seq, "hash": erased.hash} in evidence["audit_entries"]
    assert evidence["checkpoint"]["seq"] >= erased.seq  # the checkpoint covers it
    together = [t for t in committed
                if any(s.startswith("INSERT INTO lethe_audit_checkpoints") for s in t)]
    assert together and any(s.startswith("INSERT INTO lethe_audit (") for s in together[0])


@pytest.mark.parametrize("control", ["sqlite",
                                     pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_opens_of_one_subject_at_once_make_one_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
        control: str) -> None:
    """Two workers open an erasure for the same subject at the same moment: the open
    requests are read under the audit log's append lock (SQLite: the write lock), so the
    second sees the first's and returns it. Failed on the old code (both read before
    either wrote, and each opened its own), made certain here by holding each reader
    after its read."""
    import threading
    from contextlib import suppress

    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_app(url)
    policy = write_policy(tmp_path, url) if control == "sqlite" else write_policy(
        tmp_path, url, control=request.getfixturevalue("postgres_url"))
    runtimes = [runtime(policy), runtime(policy)]
    for rt in runtimes:  # the organization's key made once, before the race
        rt.audit.key()
    after_read = threading.Barrier(2, timeout=1.0)
    read = RequestStore.open_by_fingerprint

    def held_after_read(self: RequestStore, *args: Any, **kwargs: Any) -> Any:
        found = read(self, *args, **kwargs)
        with suppress(threading.BrokenBarrierError):
            after_read.wait()  # both readers meet here only if neither holds a lock
        return found

    monkeypatch.setattr(RequestStore, "open_by_fingerprint", held_after_read)
    opened: list[RequestRecord] = []
    workers = [threading.Thread(target=lambda rt=rt: opened.append(
        open_request(rt, "erasure", "user", [f"email={EMAIL}"]))) for rt in runtimes]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    for rt in runtimes:
        rt.close()
    assert len(opened) == 2 and opened[0].id == opened[1].id
    assert len(RequestStore(runtimes[0].control.engine).list()) == 1


@pytest.mark.parametrize("control", ["sqlite",
                                     pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_opened_request_is_the_row_as_written(tmp_path: Path, control: str,
                                                 request: pytest.FixtureRequest) -> None:
    """Opening takes the created requests from the INSERT (`RETURNING`), not from a read
    after it; what it returns is what is stored (times in UTC, identities decoded), on
    either control store. Failed on the old code (a SELECT of the new rows followed the
    INSERT)."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_app(url)
    rt = runtime(write_policy(tmp_path, url) if control == "sqlite" else write_policy(
        tmp_path, url, control=request.getfixturevalue("postgres_url")))
    seen: list[str] = []

    def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        if "lethe_requests" in text:
            seen.append(text.split()[0])

    sa.event.listen(rt.control.engine, "before_cursor_execute", statement)
    try:
        opened = open_request(rt, "erasure", "user", [f"email={EMAIL}"])
    finally:
        sa.event.remove(rt.control.engine, "before_cursor_execute", statement)
    stored = RequestStore(rt.control.engine).get(opened.id)
    rt.close()
    assert seen == ["SELECT", "INSERT"], seen  # the open ones, then the new one
    assert opened == stored and opened.status == "received"


def test_certificate_files_appear_only_once_their_transaction_commits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files are written under temporary names while the certifying transaction
    commits: one that fails leaves no file behind, hidden or not; one that commits leaves
    exactly the certificate's two files, named, each a complete document."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_app(url)
    policy = write_policy(tmp_path, url)
    out = tmp_path / "out"
    rt = runtime(policy)
    record = open_request(rt, "erasure", "user", ["id=7"])
    assert run_request(rt, record.id, out).record.status == "in_progress"  # soft-deleted
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=31))

    def failing(*_: Any, **__: Any) -> None:
        raise sa.exc.OperationalError("clearing baselines", {}, Exception("disk I/O error"))

    monkeypatch.setattr(RequestStore, "clear_baselines", failing)
    with pytest.raises(Exception, match=r"clearing baselines|disk I/O"):
        run_request(rt, record.id, out)
    assert RequestStore(rt.control.engine).get(record.id).status != "completed"
    assert sorted(p.name for p in out.glob("*")) + sorted(
        p.name for p in out.glob(".*")) == []  # nothing: no certificate, no temporary
    monkeypatch.undo()
    done = run_request(rt, record.id, out)
    rt.close()
    assert done.record.status == "completed" and done.certificate is not None
    stem = f"request-{record.id}-certificate"
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.html", f"{stem}.json"]
    assert verify_certificate(load_certificate(done.certificate)).ok
    assert (out / f"{stem}.html").read_text(encoding="utf-8").rstrip().endswith("</html>")
