"""An S3 archive store's storage class and server-side encryption (issue 23, item 2,
first part): every chunk, manifest and marker lethe writes carries them, as HeadObject
on the S3 server shows, and erasure and restore still read the chunks back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import yaml

from lethe.engine.archive import restore
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.errors import PolicyError
from lethe.policy.load import load_policy
from lethe.requests.service import open_request, run_request
from tests.fixtures import build_app, runtime, write_policy

RULE = {"keep": "30d", "after": "last_seen_at", "action": "archive", "to": "cold"}
STORAGE = {"storage_class": "STANDARD_IA", "sse": "AES256"}


def _policy(tmp_path: Path, app_url: str, cold: dict[str, Any]) -> Path:
    path = write_policy(tmp_path, app_url, datasets__users__soft_delete=None,
                        datasets__users__retention=[], datasets__sessions__retention=[RULE])
    data = yaml.safe_load(path.read_text())
    data["stores"]["cold"] = cold
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _heads(s3_url: str) -> dict[str, dict[str, Any]]:
    """Every object under the store's root: its storage class and encryption."""
    parts = urlsplit(s3_url)
    client = boto3.client("s3", endpoint_url=parse_qs(parts.query)["endpoint_url"][0],
                          region_name="us-east-1")
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=parts.netloc, Prefix=parts.path.lstrip("/")) for o in page.get("Contents", [])]
    heads = {k: client.head_object(Bucket=parts.netloc, Key=k) for k in keys}
    client.close()
    return {k: {"class": h.get("StorageClass", "STANDARD"),
                "sse": h.get("ServerSideEncryption")} for k, h in heads.items()}


def test_chunks_carry_the_class_and_encryption_and_erasure_still_reaches_them(
        sqlite_url: str, s3_url: str, tmp_path: Path) -> None:
    build_app(sqlite_url)
    rt = runtime(_policy(tmp_path, sqlite_url, {"url": s3_url, "archive": STORAGE}))
    try:
        [archived] = execute(rt, build_plan(rt, ["sessions"])).actions
        assert archived.done == 10 and archived.verified
        first = _heads(s3_url)
        outcome = run_request(rt, open_request(rt, "erasure", "user", ["id=3"]).id,
                              tmp_path / "out")
        after = _heads(s3_url)
        restored = restore(rt, "sessions").restored
    finally:
        rt.close()
    kinds = {k.rsplit(".", 2)[-2] + "." + k.rsplit(".", 1)[-1] if k.endswith(".gz")
             else k.rsplit(".", 1)[-1] for k in first}
    assert {"jsonl.gz", "json", "done"} <= kinds  # chunks, manifests, markers
    assert all(h == {"class": "STANDARD_IA", "sse": "AES256"} for h in first.values()), first
    assert outcome.record.status == "completed"
    assert outcome.as_dict()["datasets"]["sessions"]["erased"] == 2  # live + archived
    assert set(after) != set(first)  # the erasure rewrote the chunk holding user 3's row
    assert all(h == {"class": "STANDARD_IA", "sse": "AES256"} for h in after.values()), after
    assert restored == 9  # read back from STANDARD_IA; the erased row does not come back


def test_without_settings_objects_are_standard_and_unencrypted(sqlite_url: str, s3_url: str,
                                                               tmp_path: Path) -> None:
    build_app(sqlite_url)
    rt = runtime(_policy(tmp_path, sqlite_url, {"url": s3_url}))
    try:
        execute(rt, build_plan(rt, ["sessions"]))
    finally:
        rt.close()
    heads = _heads(s3_url)
    assert heads and all(h["class"] == "STANDARD" for h in heads.values())


@pytest.mark.parametrize(("cold", "message"), [
    ({"url": "file:///tmp/cold", "archive": STORAGE}, "this store is not on S3"),
    ({"url": "s3://b/p", "archive": {"storage_class": "DEEP_ARCHIVE",
                                     "restore_tier": "Expedited"}}, "no Expedited"),
    ({"url": "s3://b/p", "archive": {"storage_class": "GLACIER", "restore_days": 0}},
     "restore_days"),
    ({"url": "s3://b/p", "archive": {"sse": "AES256", "kms_key_id": "k"}}, "aws:kms"),
])
def test_settings_s3_cannot_honour_are_policy_errors(sqlite_url: str, tmp_path: Path,
                                                     cold: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policy(_policy(tmp_path, sqlite_url, cold))


def test_a_cold_class_is_restored_before_an_erasure_or_a_restore_reads_it(
        sqlite_url: str, s3_url: str, tmp_path: Path) -> None:
    """GLACIER chunks (issue 23, item 2): written readable, verified, then moved to their
    class; manifests and markers stay readable. An erasure that must rewrite a chunk asks
    S3 to restore it and waits (the request stays in progress, saying so); a later run
    finishes. `archive restore` likewise; `archive list` shows each chunk's state."""
    from lethe.commands.retention import list_archived

    cold = {"url": s3_url, "archive": {"storage_class": "GLACIER", "sse": "AES256",
                                       "restore_tier": "Bulk", "restore_days": 3}}
    build_app(sqlite_url)
    rt = runtime(_policy(tmp_path, sqlite_url, cold))
    try:
        [archived] = execute(rt, build_plan(rt, ["sessions"])).actions
        assert archived.done == 10 and archived.verified
        heads = _heads(s3_url)
        listed = list_archived(rt, "sessions")
        request = open_request(rt, "erasure", "user", ["id=3"])
        waiting = run_request(rt, request.id, tmp_path / "out")
        asked = [e for e in rt.audit.entries() if e.action == "archive.restore-requested"]
        done = run_request(rt, request.id, tmp_path / "out")
        first = restore(rt, "sessions")
        second = restore(rt, "sessions")
    finally:
        rt.close()
    chunks = {k: h for k, h in heads.items() if k.endswith(".jsonl.gz")}
    assert chunks and all(h == {"class": "GLACIER", "sse": "AES256"} for h in chunks.values())
    assert all(h == {"class": "STANDARD", "sse": "AES256"} for k, h in heads.items()
               if k not in chunks)  # manifests and markers: readable
    assert [(c["storage_class"], c["state"], c["rows"]) for c in listed] == \
        [("GLACIER", "frozen", 10)]
    assert waiting.record.status == "in_progress"
    assert waiting.error is None  # waiting for S3, not failing: `request run` exits 0
    assert waiting.record.note is not None and waiting.record.note.startswith(
        "waiting at sessions: ")
    assert "1 archive chunk of sessions is being restored from GLACIER (Bulk retrieval)" \
        in waiting.record.note
    assert len(asked) == 1 and json.loads(asked[0].details)["tier"] == "Bulk"
    assert done.record.status == "completed", done.record.note
    assert done.as_dict()["datasets"]["sessions"]["erased"] == 2  # live + archived
    assert (first.pending, first.restored) == (1, 0)  # the rewritten chunk: cold again
    assert (second.pending, second.restored) == (0, 9)


def test_the_api_lists_a_dataset_s_chunks_with_their_state(tmp_path: Path) -> None:
    from tests.api.support import served

    url = f"sqlite:///{tmp_path / 'app.db'}"
    cold = {"url": f"file://{tmp_path / 'cold'}"}
    with served(tmp_path, url, policy={"datasets__sessions__retention": [RULE],
                                       "datasets__users__soft_delete": None,
                                       "datasets__users__retention": [],
                                       "stores__cold": cold}) as s:
        empty = s.call("GET", "/v1/archives/sessions").json()
        execute(s.runtime, build_plan(s.runtime, ["sessions"]))
        listed = s.call("GET", "/v1/archives/sessions")
        unknown = s.call("GET", "/v1/archives/nope")
    assert empty == {"dataset": "sessions", "chunks": []}
    assert listed.status_code == 200, listed.text
    [chunk] = listed.json()["chunks"]
    assert (chunk["store"], chunk["rows"], chunk["state"]) == ("cold", 10, "readable")
    assert unknown.status_code == 404


def test_a_purge_waits_for_its_subject_s_cold_archived_rows(sqlite_url: str, s3_url: str,
                                                             tmp_path: Path) -> None:
    """User 6, soft-deleted past its window, has a session archived to GLACIER: the run
    that archives it cannot take it out again until S3 restores the chunk, so it keeps
    user 6 (whose row is how the archived one is found) and says why; the next run,
    the chunk restored, purges both."""
    from lethe.engine.archive import ArchiveSink
    from tests.fixtures import ids, users

    engine = build_app(sqlite_url)
    path = write_policy(tmp_path, sqlite_url, datasets__sessions__retention=[RULE])
    data = yaml.safe_load(path.read_text())
    data["stores"]["cold"] = {"url": s3_url, "archive": {"storage_class": "GLACIER"}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    rt = runtime(path)
    try:
        first = execute(rt, build_plan(rt))
        kept = 6 in ids(engine, users)
        second = execute(rt, build_plan(rt))
        sink = ArchiveSink(rt, "sessions", rt.catalog.object_store("cold"))
        left = sink.erase("user_id", {"6": "6"}, dry=True)
    finally:
        rt.close()
    errors = {(a.planned.step.dataset, a.planned.step.action): a.error
              for a in first.actions if a.error}
    assert "being restored from GLACIER" in errors[("sessions", "remove-archived")]
    assert errors[("users", "purge")].startswith("not run: sessions (remove-archived)")
    assert kept and first.ok is False
    assert second.ok, second.as_dict()
    assert 6 not in ids(engine, users) and left == {}
