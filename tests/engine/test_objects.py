"""Object datasets on a local directory and on a real S3 protocol server (moto, in
server mode on loopback): retention by last-modified time or a metadata timestamp,
rules on metadata, batched deletes, holds through `per_subject`, subject erasure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from lethe.clock import Clock
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.errors import PolicyError
from lethe.holds import parse_scope, place_hold
from lethe.policy.load import load_policy
from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.requests.service import open_request, run_request
from lethe.runtime import Runtime
from lethe.stores.objects import ObjectStore, open_object_store
from tests.fixtures import build_app, versioned_bucket, write_policy

# Objects are written now, so the clock runs ahead of the wall clock
LATER = datetime.now(UTC) + timedelta(days=40)


def _policy(tmp_path: Path, app_url: str, objects_url: str, **exports: Any) -> Path:
    path = write_policy(tmp_path, app_url, datasets__users__soft_delete=None,
                        datasets__users__retention=[])
    data = yaml.safe_load(path.read_text())
    data["stores"]["files"] = {"url": objects_url}
    data["datasets"]["exports"] = {
        "store": "files", "prefix": "exports/", "class": "pii",
        "per_subject": {"user": "exports/{id}/"},
        "retention": [
            {"when": {"metadata.kind": "invoice"}, "keep": "7y", "after": "metadata.issued"},
            {"keep": "30d"},
        ], **exports}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _fill(store: ObjectStore) -> None:
    for user in (1, 2, 3, 7, 30):
        store.put(f"exports/{user}/report.csv", b"a,b\n1,2\n")
        store.put(f"exports/{user}/old-invoice.pdf", b"%PDF", {"kind": "invoice",
                                                                 "issued": "2015-01-01"})
        store.put(f"exports/{user}/new-invoice.pdf", b"%PDF", {"kind": "invoice",
                                                                 "issued": "2025-01-01"})
    store.put("exports/orphan.csv", b"x")  # nobody's
    store.put("other/keep.csv", b"x")  # outside the dataset's prefix


def _keys(store: ObjectStore) -> set[str]:
    return {item.key for page in store.pages("") for item in page}


def test_run_deletes_due_objects_by_rule_and_keeps_held_ones(sqlite_url: str, objects_url: str,
                                                             tmp_path: Path) -> None:
    build_app(sqlite_url)
    store = open_object_store("files", objects_url)
    _fill(store)
    rt = Runtime.open(load_policy(_policy(tmp_path, sqlite_url, objects_url)), Clock(LATER))
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, "user:7", None, None),
               "case 7")
    plan = build_plan(rt, ["exports"])
    summary = [(a.step.rule, a.step.action, a.rows, a.held) for a in plan.actions]
    # rule 0: invoices issued 2015 are past 7 years; rule 1: everything else is 40 days old
    assert summary == [(0, "delete", 4, 1), (1, "delete", 5, 1)]
    result = execute(rt, plan)
    assert [(a.done, a.verified) for a in result.actions] == [(4, True), (5, True)]
    left = _keys(store)
    assert left == {f"exports/{u}/new-invoice.pdf" for u in (1, 2, 3, 30)} | {
        "exports/7/report.csv", "exports/7/old-invoice.pdf", "exports/7/new-invoice.pdf",
        "other/keep.csv"}
    assert [a.rows for a in build_plan(rt, ["exports"]).actions] == [0, 0]
    rt.close()
    store.close()


def test_erasure_removes_the_subjects_objects_only(app_url: str, objects_url: str,
                                                   tmp_path: Path) -> None:
    build_app(app_url)
    store = open_object_store("files", objects_url)
    _fill(store)
    rt = Runtime.open(load_policy(_policy(tmp_path, app_url, objects_url)), Clock(LATER))
    outcome = run_request(rt, open_request(rt, "erasure", "user", ["id=3"]).id,
                          tmp_path / "out")
    assert outcome.record.status == "completed"
    assert outcome.as_dict()["datasets"]["exports"] == {"rows": 3, "erased": 3, "retained": 0,
                                                        "held": 0}
    left = _keys(store)
    assert not any(k.startswith("exports/3/") for k in left)
    assert sum(k.startswith("exports/30/") for k in left) == 3  # 30 is not 3
    assert outcome.certificate is not None
    assert verify_certificate(load_certificate(outcome.certificate)).ok
    rt.close()
    store.close()


def test_retained_objects_are_certified_and_kept(sqlite_url: str, s3_url: str,
                                                 tmp_path: Path) -> None:
    build_app(sqlite_url)
    store = open_object_store("files", s3_url)
    _fill(store)
    policy = _policy(tmp_path, sqlite_url, s3_url, erasure="retain",
                     legal_basis="statements kept 10 years")
    rt = Runtime.open(load_policy(policy), Clock(LATER))
    outcome = run_request(rt, open_request(rt, "erasure", "user", ["id=2"]).id,
                          tmp_path / "out")
    rt.close()
    assert outcome.as_dict()["datasets"]["exports"] == {"rows": 3, "erased": 0, "retained": 3,
                                                        "held": 0}
    assert sum(k.startswith("exports/2/") for k in _keys(store)) == 3
    store.close()


@pytest.mark.parametrize(("change", "message"), [
    ({"retention": [{"keep": "1d", "after": "created_at"}]}, "`last_modified` or"),
    ({"retention": [{"keep": "1d", "when": {"status": "x"}}]}, "tested on `metadata.NAME`"),
    ({"retention": [{"keep": "1d", "action": "anonymize"}]}, "objects are deleted"),
    ({"erasure": "anonymize"}, "erasure anonymize needs"),
    ({"belongs_to": {"users": "user_id"}}, "objects, not columns"),
])
def test_object_dataset_mistakes_are_policy_errors(tmp_path: Path, change: dict[str, Any],
                                                   message: str) -> None:
    path = _policy(tmp_path, "sqlite:///app.db", "file://./objects", **change)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert message in str(caught.value) and "datasets.exports" in str(caught.value)


def test_access_export_carries_the_subjects_objects(sqlite_url: str, objects_url: str,
                                                    tmp_path: Path) -> None:
    import base64
    import zipfile

    from lethe.requests.export import verify_access_export

    build_app(sqlite_url)
    store = open_object_store("files", objects_url)
    _fill(store)
    rt = Runtime.open(load_policy(_policy(tmp_path, sqlite_url, objects_url)), Clock(LATER))
    outcome = run_request(rt, open_request(rt, "access", "user", ["email=user3@example.com"]).id,
                          tmp_path / "out")
    rt.close()
    assert outcome.export is not None and verify_access_export(outcome.export) == (True, None)
    with zipfile.ZipFile(outcome.export) as archive:
        objects = json.loads(archive.read("exports.json"))
    assert sorted(o["key"] for o in objects) == ["exports/3/new-invoice.pdf",
                                                 "exports/3/old-invoice.pdf",
                                                 "exports/3/report.csv"]
    report = next(o for o in objects if o["key"].endswith("report.csv"))
    assert base64.b64decode(report["content"].removeprefix("base64:")) == b"a,b\n1,2\n"
    invoice = next(o for o in objects if o["key"].endswith("old-invoice.pdf"))
    assert invoice["metadata"] == {"kind": "invoice", "issued": "2015-01-01"}
    store.close()


def test_tag_rules_and_subjects_named_in_metadata(sqlite_url: str, objects_url: str,
                                                  tmp_path: Path) -> None:
    """`when` on a tag; a subject found by a metadata value, not by the key."""
    build_app(sqlite_url)
    store = open_object_store("files", objects_url)
    for name, owner, tags in (("a", "3", {"retention": "short"}), ("b", "30", None),
                              ("c", "7", {"retention": "short"}), ("d", "3", None)):
        store.put(f"calls/{name}.wav", b"RIFF", {"owner": owner}, tags)
    path = _policy(tmp_path, sqlite_url, objects_url)
    data = yaml.safe_load(path.read_text())
    data["datasets"]["recordings"] = {
        "store": "files", "prefix": "calls/", "class": "pii",
        "per_subject": {"user": "metadata.owner={id}"},
        "retention": [{"when": {"tag.retention": "short"}, "keep": "7d"}, {"keep": "60d"}]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    rt = Runtime.open(load_policy(path), Clock(LATER))
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, "user:7", None, None),
               "case 7")
    plan = build_plan(rt, ["recordings"])
    assert [(a.step.rule, a.rows, a.held) for a in plan.actions] == [(0, 1, 1), (1, 0, 0)]
    execute(rt, plan)
    assert _keys(store) >= {"calls/b.wav", "calls/c.wav", "calls/d.wav"}
    assert "calls/a.wav" not in _keys(store)
    outcome = run_request(rt, open_request(rt, "erasure", "user", ["id=3"]).id,
                          tmp_path / "out")
    assert outcome.as_dict()["datasets"]["recordings"]["erased"] == 1
    assert {k for k in _keys(store) if k.startswith("calls/")} == {"calls/b.wav",
                                                                   "calls/c.wav"}
    rt.close()
    store.close()


def test_deleting_in_a_versioned_bucket_removes_every_version(s3_url: str) -> None:
    client, bucket = versioned_bucket(s3_url)
    store = open_object_store("files", s3_url)
    store.put("exports/3/a.csv", b"first")
    store.put("exports/3/a.csv", b"second")  # the first lives on as a noncurrent version
    store.put("exports/3/ab.csv", b"other")  # shares the prefix; must survive
    assert store.delete(["exports/3/a.csv"]) == 1
    listed = client.list_object_versions(Bucket=bucket, Prefix="root/exports/3/a")
    left = [v["Key"] for v in (*listed.get("Versions", []), *listed.get("DeleteMarkers", []))]
    assert left == ["root/exports/3/ab.csv"]
    store.close()
    client.close()


def test_a_template_ending_in_a_value_never_reads_42_as_4(sqlite_url: str, objects_url: str,
                                                         tmp_path: Path) -> None:
    build_app(sqlite_url)
    store = open_object_store("files", objects_url)
    for user in (4, 42):
        store.put(f"exports/{user}/a.csv", b"x", {"Owner": str(user)})
    path = _policy(tmp_path, sqlite_url, objects_url, per_subject={"user": "exports/{id}"})
    rt = Runtime.open(load_policy(path), Clock(LATER))
    outcome = run_request(rt, open_request(rt, "erasure", "user", ["id=4"]).id,
                          tmp_path / "out")
    rt.close()
    assert outcome.as_dict()["datasets"]["exports"]["erased"] == 1
    assert _keys(store) >= {"exports/42/a.csv"} and "exports/4/a.csv" not in _keys(store)
    store.close()
