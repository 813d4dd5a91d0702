"""A witness outside the control store (issue 17, item 2).

Deleting the log's tail *and* the checkpoint rows that cover it passes `audit verify`
without a witness; so does a tail replaced by entries with correctly computed hashes.
With every signed checkpoint also kept by a witness (a file, or an S3 bucket under
Object Lock in compliance mode), every tampering below is caught.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
import yaml
from botocore.exceptions import ClientError

from lethe.audit.chain import GENESIS, entry_hash
from lethe.audit.events import HoldReleased
from lethe.audit.log import AuditLog, AuditSettings
from lethe.audit.witness import FileWitness, Witness, open_witness
from lethe.control.schema import audit
from lethe.control.store import ControlStore
from tests.fixtures import build_app, write_policy

Tamper = Callable[[AuditLog], None]


def sql(log: AuditLog, statement: str, **params: object) -> None:
    with log.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def _forge_tail(log: AuditLog, keep: int, total: int) -> None:
    """Cut after `keep`, drop the checkpoints past it, append entries with valid hashes."""
    sql(log, "DELETE FROM lethe_audit WHERE seq > :k", k=keep)
    sql(log, "DELETE FROM lethe_audit_checkpoints WHERE seq > :k", k=keep)
    last = log.entries()[-1]
    prev = last.hash
    with log.engine.begin() as conn:
        for seq in range(keep + 1, total + 1):
            fields = (last.at, last.actor, last.source, last.action, last.target,
                      "forged", last.details)
            digest = entry_hash(prev, seq, fields)
            conn.execute(audit.insert().values(seq=seq, at=last.at, actor=last.actor,
                                               source=last.source, action=last.action,
                                               target=last.target, reason="forged",
                                               details=last.details, prev_hash=prev,
                                               hash=digest))
            prev = digest


def _rewrite_all(log: AuditLog) -> None:
    """Recompute the whole chain with one entry changed, and drop every checkpoint."""
    prev = GENESIS
    entries = log.entries()
    with log.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM lethe_audit_checkpoints"))
        for e in entries:
            reason = "forged" if e.seq == 3 else e.reason
            digest = entry_hash(prev, e.seq, (e.at, e.actor, e.source, e.action, e.target,
                                              reason, e.details))
            conn.execute(audit.update().where(audit.c.seq == e.seq).values(
                reason=reason, prev_hash=prev, hash=digest))
            prev = digest


def _swap(log: AuditLog, a: int, b: int) -> None:
    sql(log, "UPDATE lethe_audit SET seq = 1000 WHERE seq = :a", a=a)
    sql(log, "UPDATE lethe_audit SET seq = :a WHERE seq = :b", a=a, b=b)
    sql(log, "UPDATE lethe_audit SET seq = :b WHERE seq = 1000", b=b)


TAMPERINGS: dict[str, Tamper] = {
    "edit": lambda log: sql(log, "UPDATE lethe_audit SET reason = 'x' WHERE seq = 7"),
    "delete": lambda log: sql(log, "DELETE FROM lethe_audit WHERE seq = 7"),
    "insert": lambda log: sql(
        log, "INSERT INTO lethe_audit (seq, at, actor, source, action, target, reason, "
        "details, prev_hash, hash) SELECT 13, at, actor, source, action, target, reason, "
        "details, hash, hash FROM lethe_audit WHERE seq = 12"),
    "reorder": lambda log: _swap(log, 6, 7),
    "truncate": lambda log: sql(log, "DELETE FROM lethe_audit WHERE seq > 9"),
    "truncate and delete the checkpoints": lambda log: (
        sql(log, "DELETE FROM lethe_audit WHERE seq > 9"),
        sql(log, "DELETE FROM lethe_audit_checkpoints WHERE seq > 9")),
    "truncate everything": lambda log: (sql(log, "DELETE FROM lethe_audit"),
                                        sql(log, "DELETE FROM lethe_audit_checkpoints")),
    "tail replaced by valid hashes": lambda log: _forge_tail(log, 9, 12),
    "tail replaced and extended": lambda log: _forge_tail(log, 9, 14),
    "whole chain rewritten, checkpoints dropped": _rewrite_all,
}
# caught without a witness too; the others pass a witness-less verify
CAUGHT_WITHOUT_WITNESS = {"edit", "delete", "insert", "reorder", "truncate"}


def _log(tmp_path: Path, witness: Witness | None) -> AuditLog:
    control = ControlStore(f"sqlite:///{tmp_path / 'state.db'}")
    settings = AuditSettings("Test Co", tmp_path / "org.key", checkpoint_every=5,
                             witness=witness)
    log = AuditLog(control.engine, settings, actor="tester", source="test-host")
    for i in range(12):
        log.append(HoldReleased(i, f"reason {i}"))  # checkpoints at 5 and 10, witnessed
    log.checkpoint()  # at 12: the end of a run
    return log


def bare(log: AuditLog) -> AuditLog:
    """The same log read with no witness configured."""
    return AuditLog(log.engine, replace(log.settings, witness=None), actor="auditor",
                    source="test-host")


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_every_tampering_is_caught_with_a_file_witness(tmp_path: Path, name: str) -> None:
    witness = FileWitness(tmp_path / "witness" / "checkpoints.jsonl")
    log = _log(tmp_path, witness)
    assert [json.loads(line)["seq"] for line in
            witness.path.read_text().splitlines()] == [5, 10, 12]
    assert log.verify(witness=witness).ok
    TAMPERINGS[name](log)
    with_witness = log.verify(witness=witness)
    assert not with_witness.ok, name
    assert log.verify().ok is False  # the configured witness is used by default
    assert bare(log).verify().ok is (name not in CAUGHT_WITHOUT_WITNESS), name


@pytest.fixture
def locked_bucket(s3_endpoint: str) -> tuple[Any, str]:
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = f"witness-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return client, bucket


def test_an_s3_witness_keeps_checkpoints_under_compliance_lock(
        tmp_path: Path, s3_endpoint: str, locked_bucket: tuple[Any, str]) -> None:
    client, bucket = locked_bucket
    url = f"s3://{bucket}/audit?endpoint_url={s3_endpoint}&region=us-east-1"
    witness = open_witness(url, retain_until=lambda: datetime.now(UTC) + timedelta(days=1))
    log = _log(tmp_path, witness)
    listed = client.list_objects_v2(Bucket=bucket, Prefix="audit/")["Contents"]
    assert [o["Key"] for o in listed] == [f"audit/checkpoint-{n:016d}.json" for n in (5, 10, 12)]
    head = client.head_object(Bucket=bucket, Key=listed[-1]["Key"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    version = head["VersionId"]
    with pytest.raises(ClientError):  # nobody removes a witnessed checkpoint early
        client.delete_object(Bucket=bucket, Key=listed[-1]["Key"], VersionId=version)
    assert log.verify(witness=witness).ok
    TAMPERINGS["truncate and delete the checkpoints"](log)
    assert bare(log).verify().ok  # what a witness-less verify cannot see
    verdict = log.verify(witness=witness)
    assert not verdict.ok and verdict.reason is not None and "truncated" in verdict.reason


def lethe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_runs_feed_the_policys_witness_and_verify_uses_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_app(url).dispose()
    path = write_policy(tmp_path, url)
    policy = yaml.safe_load(path.read_text())
    policy["audit"] = {"witness": "witness/checkpoints.jsonl"}  # relative to the policy
    path.write_text(yaml.safe_dump(policy))
    for _ in range(2):
        ran = lethe(tmp_path, "run", "--now", "2026-06-01T00:00:00Z")
        assert ran.returncode == 0, ran.stderr
    lines = (tmp_path / "witness" / "checkpoints.jsonl").read_text().splitlines()
    assert len(lines) == 2  # each run ends on a witnessed checkpoint
    ok = lethe(tmp_path, "audit", "verify", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["witnessed"] == json.loads(
        lines[-1])["seq"]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    last_seq = json.loads(lines[-1])["seq"]
    first_of_run = json.loads(lines[0])["seq"] + 1
    with engine.begin() as conn:  # the second run, and its checkpoint, removed
        conn.execute(sa.text("DELETE FROM lethe_audit WHERE seq >= :s"), {"s": first_of_run})
        conn.execute(sa.text("DELETE FROM lethe_audit_checkpoints WHERE seq >= :s"),
                     {"s": first_of_run})
    engine.dispose()
    assert lethe(tmp_path, "audit", "verify", "--witness", "stdout").returncode == 2
    broken = lethe(tmp_path, "audit", "verify")
    assert broken.returncode == 1 and f"checkpoint {last_seq} is past the end" in broken.stdout
