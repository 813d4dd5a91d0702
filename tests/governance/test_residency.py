"""Residency: a workspace's rows held outside its region are reported, unless authorised."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lethe.catalog import Finding
from lethe.clock import Clock
from lethe.control.transfers import Transfers
from lethe.control.workspaces import WorkspaceRegions
from lethe.errors import LetheError, UsageError
from lethe.governance.check import check
from lethe.governance.residency import record_transfer, revoke_transfer
from lethe.runtime import Runtime
from lethe.stores.sql import normalize_url
from tests.fixtures import NOW, build_app, events, runtime, users, write_policy

workspaces = sa.Table(
    "workspaces", sa.MetaData(),
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("home_region", sa.String(20)),
)

RESIDENCY: dict[str, Any] = {
    "regions": ["us", "eu"],
    "stores__app__region": "us",
    "residency": {"dataset": "workspaces", "region": "home_region"},
    "datasets__workspaces": {"store": "app", "table": "workspaces", "class": "operational"},
}


def build(url: str, tmp_path: Path, **changes: Any) -> Path:
    """ws_a lives in us (users 1-5, 120 events), ws_b in eu (users 6-10, 120 events);
    the app store is in us, so ws_b's rows are out of region."""
    engine = build_app(url)
    workspaces.create(engine)
    with engine.begin() as conn:
        conn.execute(workspaces.insert(), [{"id": "ws_a", "home_region": "us"},
                                           {"id": "ws_b", "home_region": "eu"}])
    engine.dispose()
    return write_policy(tmp_path, url, **{**RESIDENCY, **changes})


def residency(rt: Runtime, now: Any = NOW) -> list[Finding]:
    report = check(rt.catalog, rt.audit, now, rt.control)
    return [f for f in report.findings if f.code.startswith("residency")]


def out_of_region(rt: Runtime, now: Any = NOW) -> set[tuple[str, str]]:
    """(path, workspace) of every residency error."""
    return {(f.path, f.message.split("'")[1]) for f in residency(rt, now)
            if f.code == "residency"}


def test_a_workspace_outside_its_region_is_reported(app_url: str, tmp_path: Path) -> None:
    rt = runtime(build(app_url, tmp_path))
    try:
        found = residency(rt)
        report = check(rt.catalog, rt.audit, NOW, rt.control)
    finally:
        rt.close()
    assert not report.ok
    by_path = {f.path: f for f in found}
    assert set(by_path) == {"datasets.users.store", "datasets.events.store"}
    users_finding = by_path["datasets.users.store"]
    assert users_finding.severity == "error"
    assert users_finding.message == ("workspace 'ws_b': 5 rows of users are in store 'app' "
                                     "(region 'us'), outside the workspace's region 'eu'")
    assert "120 rows of events" in by_path["datasets.events.store"].message
    assert not any("example.com" in f.message for f in report.findings)


def test_without_residency_nothing_is_reported(app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    rt = runtime(write_policy(tmp_path, app_url, regions=["us", "eu"],
                              stores__app__region="us"))
    try:
        assert residency(rt) == []
    finally:
        rt.close()


def test_an_api_region_overrides_the_declared_one(app_url: str, tmp_path: Path) -> None:
    rt = runtime(build(app_url, tmp_path))
    try:
        preferences = WorkspaceRegions(rt.control.engine)
        preferences.set("ws_b", "us", "api-key:k1")
        assert out_of_region(rt) == set()
        preferences.set("ws_a", "eu", "api-key:k1")
        assert out_of_region(rt) == {("datasets.users.store", "ws_a"),
                                     ("datasets.events.store", "ws_a")}
        preferences.set("ws_b", None, "api-key:k1")  # cleared: the declared region again
        assert ("datasets.users.store", "ws_b") in out_of_region(rt)
    finally:
        rt.close()


def test_a_transfer_exempts_until_revoked_and_both_are_audited(app_url: str,
                                                               tmp_path: Path) -> None:
    rt = runtime(build(app_url, tmp_path))
    try:
        transfers = Transfers(rt.control.engine)
        transfer = record_transfer(transfers, rt.audit, rt.clock, rt.policy, workspace="ws_b",
                                   dataset="users", to_region="us",
                                   reason="SCCs signed, ticket LEGAL-12")
        assert out_of_region(rt) == {("datasets.events.store", "ws_b")}
        revoke_transfer(transfers, rt.audit, rt.clock, transfer.id)
        assert ("datasets.users.store", "ws_b") in out_of_region(rt)
        entries = [(e.action, e.target, e.reason) for e in rt.audit.entries()
                   if e.action.startswith("transfer.")]
        with pytest.raises(LetheError, match="no unrevoked transfer"):
            revoke_transfer(transfers, rt.audit, rt.clock, transfer.id)
    finally:
        rt.close()
    assert entries == [("transfer.recorded", f"transfer:{transfer.id}",
                        "SCCs signed, ticket LEGAL-12"),
                       ("transfer.revoked", f"transfer:{transfer.id}", "")]


def test_an_expired_transfer_no_longer_exempts(app_url: str, tmp_path: Path) -> None:
    rt = runtime(build(app_url, tmp_path))
    try:
        record_transfer(Transfers(rt.control.engine), rt.audit, rt.clock, rt.policy,
                        workspace="ws_b", dataset="events", to_region="us",
                        reason="migration window", until="2026-06-30")
        assert ("datasets.events.store", "ws_b") not in out_of_region(rt)
        assert ("datasets.events.store", "ws_b") not in out_of_region(
            rt, NOW + timedelta(days=29, hours=23))
        assert ("datasets.events.store", "ws_b") in out_of_region(rt, NOW + timedelta(days=30))
    finally:
        rt.close()


def test_org_rows_are_not_a_workspace_and_unknown_workspaces_are_warned(
        app_url: str, tmp_path: Path) -> None:
    policy = build(app_url, tmp_path)
    engine = sa.create_engine(normalize_url(app_url))
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.id == 1).values(workspace_id="__org__"))
        conn.execute(events.update().where(events.c.id <= 3).values(workspace_id="ws_new"))
    engine.dispose()
    rt = runtime(policy)
    try:
        found = residency(rt)
    finally:
        rt.close()
    assert not any("__org__" in f.message for f in found)
    [unknown] = [f for f in found if f.code == "residency-unknown"]
    assert unknown.severity == "warning"
    assert unknown.message == "3 rows belong to 1 workspaces with no known region ('ws_new')"


def test_a_default_region_covers_undeclared_workspaces(app_url: str, tmp_path: Path) -> None:
    policy = build(app_url, tmp_path, residency={"dataset": "workspaces",
                                                 "region": "home_region", "default": "eu"})
    engine = sa.create_engine(normalize_url(app_url))
    with engine.begin() as conn:
        conn.execute(workspaces.delete().where(workspaces.c.id == "ws_a"))
    engine.dispose()
    rt = runtime(policy)
    try:
        assert ("datasets.users.store", "ws_a") in out_of_region(rt)
    finally:
        rt.close()


def test_a_missing_region_column_is_a_finding(sqlite_url: str, tmp_path: Path) -> None:
    rt = runtime(build(sqlite_url, tmp_path, residency={"dataset": "workspaces",
                                                        "region": "region"}))
    try:
        report = check(rt.catalog, rt.audit, NOW, rt.control)
    finally:
        rt.close()
    assert ("error", "missing-column", "residency.region") in {
        (f.severity, f.code, f.path) for f in report.findings}


def test_transfers_are_validated(sqlite_url: str, tmp_path: Path) -> None:
    rt = runtime(build(sqlite_url, tmp_path))
    transfers = Transfers(rt.control.engine)
    cases = [({"dataset": "nope"}, "--dataset"), ({"dataset": "sessions"}, "--dataset"),
             ({"to_region": "ap"}, "--to-region"), ({"reason": " "}, "--reason"),
             ({"until": "2026-05-01"}, "--until"), ({"workspace": ""}, "--workspace")]
    try:
        for change, path in cases:
            args = {"workspace": "ws_b", "dataset": "users", "to_region": "us",
                    "reason": "r", **change}
            with pytest.raises(UsageError) as error:
                record_transfer(transfers, rt.audit, Clock(NOW), rt.policy, **args)
            assert error.value.path == path, change
        assert transfers.all(include_revoked=True) == []
    finally:
        rt.close()


def test_the_transfer_commands(sqlite_url: str, tmp_path: Path) -> None:
    policy = build(sqlite_url, tmp_path)

    def lethe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                               *args, "--policy", str(policy), "--now", NOW.isoformat()],
                              capture_output=True, text=True, timeout=120)

    recorded = lethe("transfer", "record", "--workspace", "ws_b", "--dataset", "users",
                     "--to-region", "us", "--reason", "DPA <annex 2>", "--until",
                     "2026-12-31", "--json")
    assert recorded.returncode == 0, recorded.stderr
    transfer = json.loads(recorded.stdout)
    assert transfer["until"] == "2027-01-01T00:00:00+00:00"
    listed = json.loads(lethe("transfer", "list", "--json").stdout)["transfers"]
    assert [(t["id"], t["workspace"], t["active"]) for t in listed] == [
        (transfer["id"], "ws_b", True)]
    checked = lethe("check", "--json")
    assert checked.returncode == 1
    codes = {(f["code"], f["path"]) for f in json.loads(checked.stdout)["findings"]}
    assert ("residency", "datasets.events.store") in codes
    assert ("residency", "datasets.users.store") not in codes
    assert lethe("transfer", "revoke", str(transfer["id"]), "--json").returncode == 0
    again = lethe("transfer", "revoke", str(transfer["id"]))
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "no unrevoked transfer" in again.stderr
    assert lethe("transfer", "list", "--json").stdout.strip() == '{"transfers": []}'


def test_rows_an_archive_rule_moves_out_of_region_are_reported(app_url: str,
                                                              tmp_path: Path) -> None:
    """Issue 23, item 3: residency follows the data into an archive store. ws_a (us)
    would have its events archived to a store in eu; ws_b (eu) would not; a transfer of
    ws_a's events to eu covers them."""
    policy = build(app_url, tmp_path, datasets__events__retention=[
        {"keep": "90d", "after": "received_at", "action": "archive", "to": "cold"}])
    data = yaml.safe_load(policy.read_text())
    data["stores"]["cold"] = {"url": f"file://{tmp_path / 'cold'}", "region": "eu"}
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    rt = runtime(policy)
    try:
        found = [f for f in residency(rt) if f.path.endswith(".to")]
        transfers = Transfers(rt.control.engine)
        record_transfer(transfers, rt.audit, rt.clock, rt.policy, workspace="ws_a",
                        dataset="events", to_region="eu", reason="archive in eu, LEGAL-9")
        after = [f for f in residency(rt) if f.path.endswith(".to")]
    finally:
        rt.close()
    assert [(f.severity, f.path) for f in found] == [
        ("error", "datasets.events.retention[0].to")]
    assert found[0].message == ("workspace 'ws_a': 120 rows of events are archived to store "
                                "'cold' (region 'eu') once old enough, outside the "
                                "workspace's region 'us'")
    assert after == []


def test_an_archive_bucket_s_replicas_are_held_to_each_workspace_s_region(
        tmp_path: Path, s3_url: str) -> None:
    """Issue 23, item 3: an archive store whose bucket replicates (S3 replication rules)
    puts a copy in the replica's region: ws_b (eu) archived to an eu bucket replicated
    to a us one is out of region there until a transfer covers us; a replica no store
    declares is reported, its region being unknown."""
    from urllib.parse import parse_qs, urlsplit

    import boto3

    url = f"sqlite:///{tmp_path / 'app.db'}"
    parts = urlsplit(s3_url)
    endpoint = parse_qs(parts.query)["endpoint_url"][0]
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    source, replica, stray = parts.netloc, parts.netloc + "-us", parts.netloc + "-x"
    for bucket in (replica, stray):
        client.create_bucket(Bucket=bucket)
    for bucket in (source, replica, stray):
        client.put_bucket_versioning(Bucket=bucket,
                                     VersioningConfiguration={"Status": "Enabled"})

    def replicate_to(*buckets: str) -> None:
        client.put_bucket_replication(Bucket=source, ReplicationConfiguration={
            "Role": "arn:aws:iam::123456789012:role/replication",
            "Rules": [{"ID": b, "Status": "Enabled", "Priority": i, "Filter": {"Prefix": ""},
                       "DeleteMarkerReplication": {"Status": "Disabled"},
                       "Destination": {"Bucket": f"arn:aws:s3:::{b}"}}
                      for i, b in enumerate(buckets, start=1)]})

    policy = build(url, tmp_path, datasets__events__retention=[
        {"keep": "90d", "after": "received_at", "action": "archive", "to": "cold"}])
    data = yaml.safe_load(policy.read_text())
    data["stores"]["cold"] = {"url": s3_url, "region": "eu"}
    data["stores"]["cold_us"] = {"url": s3_url.replace(source, replica), "region": "us"}
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    rt = runtime(policy)
    try:
        alone = {(f.code, f.message.split("'")[1]) for f in residency(rt)
                 if f.path.startswith(("datasets.events.retention", "stores.cold"))}
        replicate_to(replica)
        replicated = [f for f in residency(rt) if f.path.endswith(".to")]
        record_transfer(Transfers(rt.control.engine), rt.audit, rt.clock, rt.policy,
                        workspace="ws_b", dataset="events", to_region="us",
                        reason="replica in us, LEGAL-14")
        covered = {f.message.split("'")[1] for f in residency(rt) if f.path.endswith(".to")}
        replicate_to(replica, stray)
        unknown = [f for f in residency(rt) if f.code == "residency-replica"]
    finally:
        rt.close()
        client.close()
    assert alone == {("residency", "ws_a")}  # only the eu store itself, for the us workspace
    assert {(f.message.split("'")[1], "replicated to bucket" in f.message)
            for f in replicated} == {("ws_a", False), ("ws_b", True)}
    [ws_b] = [f for f in replicated if "'ws_b'" in f.message]
    assert ws_b.message == (
        f"workspace 'ws_b': 120 rows of events are archived to store 'cold', replicated to "
        f"bucket '{replica}' (store 'cold_us', region 'us') once old enough, outside the "
        "workspace's region 'eu'")
    assert covered == {"ws_a"}
    assert [(f.severity, f.path) for f in unknown] == [("error", "stores.cold")]
    assert f"replicates to bucket '{stray}', which no store of the policy declares" in \
        unknown[0].message


def test_an_object_store_replicated_to_another_region_is_reported(
        tmp_path: Path, s3_url: str) -> None:
    """Objects belong to no known workspace: a replica in another region is a warning
    for the store; one in the same region is nothing."""
    from urllib.parse import parse_qs, urlsplit

    import boto3

    url = f"sqlite:///{tmp_path / 'app.db'}"
    parts = urlsplit(s3_url)
    client = boto3.client("s3", endpoint_url=parse_qs(parts.query)["endpoint_url"][0],
                          region_name="us-east-1")
    source = parts.netloc
    for bucket in (source + "-eu", source + "-us"):
        client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=source, VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_replication(Bucket=source, ReplicationConfiguration={
        "Role": "arn:aws:iam::123456789012:role/replication",
        "Rules": [{"ID": b, "Status": "Enabled", "Priority": i, "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": f"arn:aws:s3:::{b}"}}
                  for i, b in enumerate((source + "-eu", source + "-us"), start=1)]})
    client.close()
    policy = build(url, tmp_path)
    data = yaml.safe_load(policy.read_text())
    data["stores"].update({
        "files": {"url": s3_url, "region": "eu"},
        "files_eu": {"url": s3_url.replace(source, source + "-eu"), "region": "eu"},
        "files_us": {"url": s3_url.replace(source, source + "-us"), "region": "us"}})
    data["datasets"]["uploads"] = {"store": "files", "prefix": "uploads/", "class": "pii"}
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    rt = runtime(policy)
    try:
        found = [f for f in residency(rt) if f.code == "residency-replica"]
    finally:
        rt.close()
    assert [(f.severity, f.path, f.message) for f in found] == [
        ("warning", "stores.files", f"objects of store 'files' (region 'eu') are replicated "
         f"to bucket '{source}-us' (store 'files_us', region 'us')")]


@pytest.mark.parametrize("cold_region", ["eu", None])
def test_replicas_of_replicas_are_followed_and_a_store_without_region_still_checked(
        tmp_path: Path, s3_url: str, cold_region: str | None) -> None:
    """cold -> cold_eu2 (eu) -> cold_us (us): ws_b (eu) archived to cold ends up in us,
    two hops away; and an archive store that declares no region of its own is still
    held to where its replicas are."""
    from urllib.parse import parse_qs, urlsplit

    import boto3

    url = f"sqlite:///{tmp_path / 'app.db'}"
    parts = urlsplit(s3_url)
    client = boto3.client("s3", endpoint_url=parse_qs(parts.query)["endpoint_url"][0],
                          region_name="us-east-1")
    source = parts.netloc
    hops = [(source, source + "-eu2"), (source + "-eu2", source + "-us")]
    client.create_bucket(Bucket=source + "-eu2")
    client.create_bucket(Bucket=source + "-us")
    for bucket, destination in hops:
        client.put_bucket_versioning(Bucket=bucket,
                                     VersioningConfiguration={"Status": "Enabled"})
        client.put_bucket_replication(Bucket=bucket, ReplicationConfiguration={
            "Role": "arn:aws:iam::123456789012:role/replication",
            "Rules": [{"ID": "all", "Status": "Enabled", "Priority": 1,
                       "Filter": {"Prefix": ""},
                       "DeleteMarkerReplication": {"Status": "Disabled"},
                       "Destination": {"Bucket": f"arn:aws:s3:::{destination}"}}]})
    client.close()
    policy = build(url, tmp_path, datasets__events__retention=[
        {"keep": "90d", "after": "received_at", "action": "archive", "to": "cold"}])
    data = yaml.safe_load(policy.read_text())
    data["stores"]["cold"] = {"url": s3_url, **({"region": cold_region} if cold_region else {})}
    data["stores"]["cold_eu2"] = {"url": s3_url.replace(source, source + "-eu2"),
                                  "region": "eu"}
    data["stores"]["cold_us"] = {"url": s3_url.replace(source, source + "-us"), "region": "us"}
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    rt = runtime(policy)
    try:
        found = [f for f in residency(rt) if f.path.endswith(".to")]
    finally:
        rt.close()
    in_us = [f for f in found if "'ws_b'" in f.message]
    assert len(in_us) == 1 and f"bucket '{source}-us' (store 'cold_us', region 'us')" in \
        in_us[0].message
    # ws_a (us): out of region in eu (the store itself, if it says so, and cold_eu2)
    in_eu = [f.message for f in found if "'ws_a'" in f.message]
    assert len(in_eu) == (2 if cold_region else 1)
    assert all("region 'eu')" in m and "store 'cold_us'" not in m for m in in_eu)


def test_a_transfer_that_authorises_nothing_is_reported(app_url: str, tmp_path: Path) -> None:
    """A transfer's destination is checked: the workspace's own region, or a region
    none of the dataset's data goes to, is a transfer on record that is not what
    happens (a warning); one to where the data is held is not reported."""
    data = yaml.safe_load(build(app_url, tmp_path).read_text())
    data["regions"] = ["us", "eu", "apac"]
    policy = tmp_path / "lethe.yaml"
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    rt = runtime(policy)
    try:
        transfers = Transfers(rt.control.engine)
        for workspace, region in (("ws_b", "us"), ("ws_b", "eu"), ("ws_a", "apac")):
            record_transfer(transfers, rt.audit, rt.clock, rt.policy, workspace=workspace,
                            dataset="users", to_region=region, reason="LEGAL-20")
        found = [(f.severity, f.message) for f in residency(rt)
                 if f.code == "residency-transfer"]
    finally:
        rt.close()
    assert found == [
        ("warning", "transfer 2 (workspace 'ws_b', users) authorises the workspace's own "
                    "region 'eu': nothing to authorise"),
        ("warning", "transfer 3 (workspace 'ws_a', users) authorises region 'apac', where "
                    "no data of users goes (its store, archives and their replicas)")]
