"""The audit chain detects every kind of tampering, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.audit.chain import GENESIS, SEPARATOR, entry_hash
from lethe.audit.events import AuditEvent, CheckRan, HoldReleased
from lethe.audit.export import export_log, verify_export
from lethe.audit.log import AuditLog, AuditSettings
from lethe.control.schema import audit, audit_checkpoints
from lethe.control.store import ControlStore
from lethe.crypto.signing import create_key, public_pem
from lethe.errors import LetheError


@pytest.fixture(params=["sqlite", "postgres"])
def control_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def log(control_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    control = ControlStore(control_url)
    settings = AuditSettings("Test Co", tmp_path / "org.key", checkpoint_every=5)
    yield AuditLog(control.engine, settings, actor="tester", source="test-host")
    control.close()


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(HoldReleased(i, f"reason {i}"))


def sql(log: AuditLog, statement: str, **params: object) -> None:
    with log.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_a_fresh_chain_verifies(log: AuditLog) -> None:
    fill(log, 12)
    log.checkpoint()
    verdict = log.verify()
    assert (verdict.ok, verdict.entries, verdict.first_bad) == (True, 12, None)
    assert verdict.checkpoints == 3  # at 5, 10 and the explicit one at 12


def test_entries_link_from_genesis(log: AuditLog) -> None:
    fill(log, 2)
    first, second = log.entries()
    assert first.prev_hash == GENESIS and second.prev_hash == first.hash
    fields = (second.at, second.actor, second.source, second.action, second.target,
              second.reason, second.details)
    assert second.hash == entry_hash(first.hash, 2, fields)
    assert SEPARATOR not in "".join(fields)


def test_an_edited_entry_is_named(log: AuditLog) -> None:
    fill(log, 8)
    sql(log, "UPDATE lethe_audit SET reason = 'nothing to see' WHERE seq = 4")
    verdict = log.verify()
    assert (verdict.ok, verdict.first_bad, verdict.entries) == (False, 4, 3)


def test_a_deleted_entry_is_named(log: AuditLog) -> None:
    fill(log, 8)
    sql(log, "DELETE FROM lethe_audit WHERE seq = 6")
    verdict = log.verify()
    assert (verdict.ok, verdict.first_bad, verdict.reason) == (False, 6, "missing entry")


def test_an_inserted_entry_is_named(log: AuditLog) -> None:
    fill(log, 8)
    sql(log, "UPDATE lethe_audit SET seq = seq + 100 WHERE seq >= 3")
    sql(log, "UPDATE lethe_audit SET seq = seq - 99 WHERE seq >= 103")
    first = log.entries()[0]
    sql(log, "INSERT INTO lethe_audit (seq, at, actor, source, action, target, reason, details,"
             " prev_hash, hash) VALUES (3, :at, 'x', 'x', 'hold.placed', 'hold:9', '', '{}', "
             ":prev, :h)", at=first.at, prev=first.hash, h=first.hash)
    verdict = log.verify()
    assert (verdict.ok, verdict.first_bad) == (False, 3)


def test_reordered_entries_are_named(log: AuditLog) -> None:
    fill(log, 8)
    sql(log, "UPDATE lethe_audit SET seq = 1000 WHERE seq = 6")
    sql(log, "UPDATE lethe_audit SET seq = 6 WHERE seq = 7")
    sql(log, "UPDATE lethe_audit SET seq = 7 WHERE seq = 1000")
    verdict = log.verify()
    assert (verdict.ok, verdict.first_bad) == (False, 6)


def test_truncation_is_detected_against_the_last_checkpoint(log: AuditLog) -> None:
    fill(log, 12)
    log.checkpoint()  # at 12
    sql(log, "DELETE FROM lethe_audit WHERE seq > 9")
    verdict = log.verify()
    assert not verdict.ok and verdict.first_bad == 10
    assert verdict.reason is not None and verdict.reason.startswith("truncated")


def test_a_consistently_rewritten_chain_fails_at_the_checkpoint(log: AuditLog) -> None:
    fill(log, 12)
    entries = log.entries()
    prev = GENESIS
    with log.engine.begin() as conn:  # an attacker with database access recomputes hashes
        for e in entries:
            reason = "forged" if e.seq == 7 else e.reason
            digest = entry_hash(prev, e.seq, (e.at, e.actor, e.source, e.action, e.target,
                                              reason, e.details))
            conn.execute(audit.update().where(audit.c.seq == e.seq).values(
                reason=reason, prev_hash=prev, hash=digest))
            prev = digest
    verdict = log.verify()
    assert not verdict.ok
    assert verdict.first_bad == 6  # the first entry no valid checkpoint vouches for
    assert "checkpoint at 10" in (verdict.reason or "")


def test_a_forged_checkpoint_is_rejected(log: AuditLog) -> None:
    fill(log, 6)
    sql(log, "UPDATE lethe_audit_checkpoints SET head_hash = :h WHERE seq = 5", h="0" * 64)
    verdict = log.verify()
    assert (verdict.ok, verdict.first_bad, verdict.reason) == (
        False, 5, "checkpoint signature invalid")


def test_unregistered_events_are_refused(log: AuditLog) -> None:
    class Sneaky(AuditEvent):
        @property
        def target(self) -> str:
            return "x"

    with pytest.raises(LetheError, match="unregistered"):
        log.append(Sneaky())


def test_pruning_keeps_the_rest_verifiable(log: AuditLog) -> None:
    fill(log, 12)
    later = datetime.now(UTC) + timedelta(days=1)
    removed = log.prune(later)
    assert removed == 10  # through the checkpoint at 10; 11 and 12 have none after them
    remaining = log.entries()
    assert [e.seq for e in remaining] == [11, 12, 13]
    assert remaining[-1].action == "audit.pruned"
    assert log.verify().ok
    fill(log, 3)
    assert log.verify().ok


def test_deleting_old_entries_without_pruning_is_caught(log: AuditLog) -> None:
    fill(log, 12)
    sql(log, "DELETE FROM lethe_audit WHERE seq <= 5")  # right up to a genuine checkpoint
    verdict = log.verify()
    assert not verdict.ok and verdict.first_bad == 5
    assert "without a pruning record" in (verdict.reason or "")


def test_export_verifies_offline_and_tampering_is_caught(log: AuditLog, tmp_path: Path) -> None:
    fill(log, 7)
    log.checkpoint()
    out = tmp_path / "audit.jsonl"
    counts = export_log(log, out)
    assert counts == {"entries": 7, "checkpoints": 2}
    assert verify_export(out).ok
    lines = out.read_text().splitlines()
    record = json.loads(lines[3])
    record["actor"] = "someone else"
    lines[3] = json.dumps(record)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    verdict = verify_export(tampered)
    assert (verdict.ok, verdict.first_bad) == (False, 3)


def test_an_export_signed_by_another_key_fails_against_the_pinned_key(log: AuditLog,
                                                                       tmp_path: Path) -> None:
    fill(log, 5)
    out = tmp_path / "audit.jsonl"
    export_log(log, out)
    other = create_key(tmp_path / "other.key")
    verdict = verify_export(out, public_pem(other))
    assert not verdict.ok and verdict.reason == "checkpoint signature invalid"


def test_no_pii_reaches_the_audit_log(log: AuditLog) -> None:
    from lethe.audit.events import HoldPlaced
    from lethe.holds import Scope

    scope = Scope("subject", "ada@example.com", "user")
    mark = log.fingerprint(f"{scope.subject_kind}\x1f{scope.value}")[:16]
    log.append(HoldPlaced(1, "subject", "user", mark, "case 9"))
    log.append(CheckRan(True, 0, 0, []))
    with log.engine.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(sa.select(audit)) for v in row)
    assert "ada@example.com" not in dump and mark in dump
    # keyed: a plain hash of the identity (what anyone could compute) is not in the log
    import hashlib
    assert hashlib.sha256(b"ada@example.com").hexdigest()[:12] not in dump


APPENDER = """
import sys
from pathlib import Path
from lethe.audit.events import HoldReleased
from lethe.audit.log import AuditLog, AuditSettings
from lethe.control.store import ControlStore
control = ControlStore(sys.argv[1])
log = AuditLog(control.engine, AuditSettings("Test Co", Path(sys.argv[2]), 50),
               actor=sys.argv[3], source="proc")
for i in range(int(sys.argv[4])):
    log.append(HoldReleased(i, sys.argv[3]))
"""


@pytest.mark.postgres
def test_two_processes_appending_at_once_make_one_chain(postgres_url: str,
                                                        tmp_path: Path) -> None:
    ControlStore(postgres_url).close()  # migrate once before the race
    key = tmp_path / "org.key"
    create_key(key)
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, postgres_url, str(key),
                               f"p{i}", "300"]) for i in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    control = ControlStore(postgres_url)
    log = AuditLog(control.engine, AuditSettings("Test Co", key, 50), actor="t", source="t")
    verdict = log.verify()
    entries = log.entries()
    control.close()
    assert verdict.ok, verdict
    assert [e.seq for e in entries] == list(range(1, 601))
    assert {e.actor for e in entries} == {"p0", "p1"}


def test_checkpoints_table_holds_signatures_not_keys(log: AuditLog) -> None:
    fill(log, 5)
    with log.engine.connect() as conn:
        row = conn.execute(sa.select(audit_checkpoints)).one()
    assert len(row.signature) == 88 and "PRIVATE" not in row.signature


def test_appends_and_checkpoints_in_one_transaction_read_the_head_once(
        log: AuditLog) -> None:
    """Within one write transaction (which holds the append lock) the head an append
    leaves is the next one's: it is read once, not again before each append or the
    checkpoint. The chain verifies across such transactions, one rolled back among
    them (its head is not carried into the next), and every checkpoint signs a head."""
    from lethe.control.tx import transaction

    fill(log, 1)
    heads: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().startswith("SELECT lethe_audit.seq, lethe_audit.hash"):
            heads.append(statement)

    sa.event.listen(log.engine, "before_cursor_execute", seen)
    try:
        with transaction(log.engine, "test") as conn:
            log.append_many([HoldReleased(10, "a")], conn=conn)
            log.append_many([HoldReleased(11, "b"), HoldReleased(12, "c")], conn=conn)
            made = log.checkpoint(conn)
            log.append_many([HoldReleased(13, "d")], conn=conn)
        assert len(heads) == 1 and made is not None and made.seq == 4
        with pytest.raises(RuntimeError), transaction(log.engine, "test") as conn:
            log.append_many([HoldReleased(14, "gone")], conn=conn)
            raise RuntimeError("rolled back")
        with transaction(log.engine, "test") as conn:
            log.append_many([HoldReleased(15, "e")], conn=conn)
            log.checkpoint(conn)
    finally:
        sa.event.remove(log.engine, "before_cursor_execute", seen)
    assert len(heads) == 3  # one per transaction
    assert [e.seq for e in log.entries()] == list(range(1, 7))  # (14 rolled back)
    result = log.verify()
    assert result.ok, result
    assert [c.seq for c in log.checkpoints()] == [4, 5, 6]  # (5: every fifth entry)
