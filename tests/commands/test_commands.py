"""The commands layer on its own: each function on a real SQLite policy and control
store, without the CLI or the API in between."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lethe.commands import (
    audit,
    certificates,
    checks,
    holds,
    keys,
    requests,
    residency,
    retention,
)
from lethe.errors import NotFound, UsageError
from lethe.runtime import Runtime
from tests.fixtures import NOW, build_app, runtime, write_policy


@pytest.fixture
def policy(tmp_path: Path, sqlite_url: str) -> Path:
    build_app(sqlite_url)
    return write_policy(tmp_path, sqlite_url)


@pytest.fixture
def rt(policy: Path) -> Iterator[Runtime]:
    opened = runtime(policy)
    try:
        yield opened
    finally:
        opened.close()


def test_a_hold_keeps_rows_out_of_the_plan_until_released(rt: Runtime) -> None:
    before = retention.plan(rt, ["users"])
    placed = holds.place(rt, holds.hold_scope(rt, None, "ws_a", None), "case 12")
    assert placed.lifecycle_withdrawn == []  # no bucket in this policy
    held = retention.plan(rt, ["users"])
    assert sum(a.held for a in held.actions) > sum(a.held for a in before.actions)
    shown = holds.hold_as_dict(holds.list_holds(rt)[0], rt.audit)
    assert shown["id"] == placed.id and shown["scope"] == "workspace:ws_a"
    assert shown["reason"] == "case 12" and shown["released_at"] is None
    released = holds.release(rt, placed.id, "case closed")
    assert released.id == placed.id
    assert holds.list_holds(rt) == []
    assert [h.id for h in holds.list_holds(rt, include_released=True)] == [placed.id]
    assert retention.plan(rt, ["users"]).as_dict()["actions"] == before.as_dict()["actions"]


def test_a_workspace_sees_holds_on_it_and_those_its_keys_placed(rt: Runtime) -> None:
    on_a = holds.place(rt, holds.hold_scope(rt, None, "ws_a", None), "on a").id
    issued = keys.create_api_key(rt, "privacy", "ws_b")
    as_b = audit.acting_as(rt, keys.actor_of(issued.key), "test")
    by_b = holds.place(as_b, holds.hold_scope(as_b, "user:7", None, None), "b's own").id
    assert {h.id for h in holds.list_holds(rt)} == {on_a, by_b}
    assert [h.id for h in holds.list_holds(rt, workspace="ws_a")] == [on_a]
    assert [h.id for h in holds.list_holds(rt, workspace="ws_b")] == [by_b]


def test_a_subject_scope_is_confined_to_the_workspace_holding_its_rows(rt: Runtime) -> None:
    scope = holds.hold_scope(rt, "user:3", None, None)
    assert holds.subject_only_in(rt, scope, "ws_a")
    assert not holds.subject_only_in(rt, scope, "ws_b")
    with pytest.raises(UsageError):
        holds.hold_scope(rt, "user:3", "ws_a", None)  # two scopes at once


def test_an_access_request_opens_once_runs_and_exports(rt: Runtime, tmp_path: Path) -> None:
    opened = requests.open_request(rt, "access", "user", ["id=3"])
    again = requests.open_request(rt, "access", "user", ["id=3"])
    assert again.id == opened.id and opened.status == "received"
    assert [r.id for r in requests.list_requests(rt)] == [opened.id]
    assert requests.list_requests(rt, "completed") == []
    assert not requests.is_overdue(rt, opened)
    late = Runtime.open(rt.policy, type(rt.clock)(NOW + timedelta(days=31)))
    try:
        assert requests.is_overdue(late, requests.get_request(late, opened.id))
    finally:
        late.close()
    outcome = requests.run_request(rt, opened.id, tmp_path / "out")
    assert outcome.record.status == "completed" and outcome.export is not None
    with zipfile.ZipFile(outcome.export) as archive:
        assert any("users" in name for name in archive.namelist())
    assert requests.get_request(rt, opened.id).export_path == str(outcome.export)
    assert certificates.certificate_of(rt, opened.id) is None  # access: no certificate
    with pytest.raises(NotFound):
        certificates.kept_certificate(rt, opened.id)


def test_run_open_requests_skips_finished_ones(rt: Runtime, tmp_path: Path) -> None:
    first = requests.open_request(rt, "access", "user", ["id=2"])
    second = requests.open_request(rt, "access", "user", ["id=4"])
    rejected = requests.reject_request(rt, second.id, "identity not verified")
    assert rejected.status == "rejected" and rejected.note == "identity not verified"
    outcomes = requests.run_open_requests(rt, tmp_path / "out")
    assert [o.record.id for o in outcomes] == [first.id]
    assert requests.run_open_requests(rt, tmp_path / "out") == []
    with pytest.raises(NotFound):
        requests.get_request(rt, 999)


def test_an_erasure_request_is_certified_and_exported(policy: Path, tmp_path: Path) -> None:
    first = runtime(policy)
    try:
        request_id = requests.open_request(first, "erasure", "user", ["id=8"]).id
        assert requests.run_request(first, request_id, tmp_path / "out").record.status \
            == "in_progress"  # soft-deleted; erased once the recovery window has passed
    finally:
        first.close()
    later = runtime(policy, NOW + timedelta(days=31))
    try:
        done = requests.run_request(later, request_id, tmp_path / "out")
        assert done.record.status == "completed" and done.certified
        document = certificates.kept_certificate(later, request_id)
        assert document == certificates.certificate_of(later, request_id)
        written = certificates.export_certificates(later, [request_id], tmp_path / "certs")
        assert sorted(p.suffix for p in written) == [".html", ".json"]
        assert all(p.is_file() for p in written)
    finally:
        later.close()


def test_api_keys_authenticate_until_revoked(rt: Runtime) -> None:
    issued = keys.create_api_key(rt, "auditor", keys.ORG, "quarterly review")
    check = keys.authenticator(rt)
    found = check.key_for(issued.token)
    assert found is not None and found.id == issued.key.id and found.role == "auditor"
    assert [k.id for k in keys.list_api_keys(rt)] == [issued.key.id]
    assert keys.workspace_actors(rt, keys.ORG) == [f"key:{issued.key.id}"]
    keys.revoke_api_key(rt, issued.key.id)
    assert check.key_for(issued.token) is None
    assert keys.list_api_keys(rt) == []
    assert [k.id for k in keys.list_api_keys(rt, include_revoked=True)] == [issued.key.id]
    with pytest.raises(UsageError):
        keys.create_api_key(rt, "root", keys.ORG)


def test_impersonation_is_a_short_lived_key_naming_its_admin(rt: Runtime) -> None:
    admin = keys.create_api_key(rt, "admin", keys.ORG).key
    issued = keys.impersonate(rt, "privacy", "ws_a", 10, "ticket 4", admin=admin)
    assert issued.key.impersonator == admin.id and issued.key.expires_at is not None
    assert keys.actor_of(issued.key) == f"key:{issued.key.id} (impersonated by key:{admin.id})"
    with pytest.raises(UsageError):
        keys.impersonate(rt, "privacy", "ws_a", 61, "too long", admin=admin)
    with pytest.raises(UsageError, match="organization cannot be impersonated"):
        keys.impersonate(rt, "admin", keys.ORG, 10, "become the org", admin=admin)
    assert [k.workspace for k in keys.list_api_keys(rt) if k.impersonator] == ["ws_a"]


def test_audit_views_verify_and_export(rt: Runtime, tmp_path: Path) -> None:
    request_a = requests.open_request(rt, "access", "user", ["id=1"], workspace="ws_a")
    requests.open_request(rt, "access", "user", ["id=9"], workspace="ws_b")
    hold_b = holds.place(rt, holds.hold_scope(rt, None, "ws_b", None), "b only").id
    everything = audit.entries(rt)
    assert {"hold.placed", "request.received"} <= {e.action for e in everything}
    seen_by_a = audit.entries(rt, workspace="ws_a")
    assert {e.target for e in seen_by_a} == {f"request:{request_a.id}"}
    assert f"hold:{hold_b}" in {e.target for e in audit.entries(rt, workspace="ws_b")}
    assert [e.seq for e in audit.entries(rt, after=everything[0].seq, limit=1)] \
        == [everything[1].seq]
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)  # entries carry the wall clock's time
    assert audit.entries(rt, until=long_ago) == []
    assert len(audit.entries(rt, since=long_ago)) == len(everything)
    assert audit.verify_chain(rt).ok
    out = tmp_path / "audit.jsonl"
    counts = audit.export_to(rt, out)
    assert counts["entries"] >= len(everything)
    assert audit.verify_file(out).ok
    assert audit.prune(rt) == 0  # nothing is older than the retention yet


def test_runs_are_recorded_and_read_back(rt: Runtime) -> None:
    assert checks.check_policy(rt).ok
    result = retention.run(rt, retention.plan(rt), batch_size=3)
    assert result.ok
    assert [r["id"] for r in retention.recent_runs(rt, 5)] == [result.run]
    assert retention.run_record(rt, result.run)["id"] == result.run
    with pytest.raises(NotFound):
        retention.run_record(rt, result.run + 1)
    assert retention.plan(rt).as_dict()["actions"] and all(
        a.rows == 0 for a in retention.plan(rt).actions)


def test_workspace_regions_are_checked_against_the_policy(rt: Runtime) -> None:
    assert residency.workspace_region(rt, "ws_a") is None
    with pytest.raises(UsageError, match="one of the policy's regions"):
        residency.set_workspace_region(rt, "ws_a", "mars")
    cleared = residency.set_workspace_region(rt, "ws_a", None)
    assert cleared.region is None
    assert residency.workspace_region(rt, "ws_a") is not None
    assert residency.list_transfers(rt) == []
