"""Push-down to S3 lifecycle, on the loopback S3 server: what `lethe lifecycle` prints
and applies, what `check` reports as drift, and a hold taking the rules back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import yaml

from lethe.governance.check import check
from lethe.policy.durations import parse_duration
from lethe.policy.lifecycle import lifecycle_days
from tests.fixtures import build_app, runtime, write_policy


def _policy(tmp_path: Path, app_url: str, s3_url: str) -> Path:
    path = write_policy(tmp_path, app_url)
    data = yaml.safe_load(path.read_text())
    data["stores"]["files"] = {"url": s3_url}
    data["datasets"]["exports"] = {
        "store": "files", "prefix": "exports/", "class": "pii",
        "per_subject": {"user": "exports/{id}/"}, "retention": [{"keep": "30d"}]}
    data["datasets"]["recordings"] = {
        "store": "files", "prefix": "calls/", "class": "pii",
        "retention": [{"keep": "2mo"}]}
    data["datasets"]["statements"] = {  # metadata rules: lethe's alone
        "store": "files", "prefix": "statements/", "class": "operational",
        "retention": [{"when": {"metadata.kind": "tax"}, "keep": "10y"}, {"keep": "1y"}]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _bucket(s3_url: str) -> tuple[Any, str]:
    parts = urlsplit(s3_url)
    endpoint = parse_qs(parts.query)["endpoint_url"][0]
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"), parts.netloc


def _lethe(policy: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                           *args, "--policy", str(policy), "--json"],
                          capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
                          check=False, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_rules_round_up_and_only_what_s3_can_express_is_pushed_down() -> None:
    assert lifecycle_days(parse_duration("30d")) == 30
    assert lifecycle_days(parse_duration("2mo")) == 62
    assert lifecycle_days(parse_duration("1y")) == 366
    assert lifecycle_days(parse_duration("36h")) == 2


def test_print_apply_drift_and_a_hold_withdraws(sqlite_url: str, s3_url: str,
                                                tmp_path: Path) -> None:
    build_app(sqlite_url)
    policy = _policy(tmp_path, sqlite_url, s3_url)
    client, bucket = _bucket(s3_url)
    foreign = {"ID": "team-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
               "Expiration": {"Days": 3}}
    client.put_bucket_lifecycle_configuration(Bucket=bucket,
                                              LifecycleConfiguration={"Rules": [foreign]})

    printed = _lethe(policy, "lifecycle")["stores"]["files"]
    assert [(r["ID"], r["Filter"]["Prefix"], r["Expiration"]["Days"])
            for r in printed["rules"]] == [("lethe-exports", "root/exports/", 30),
                                           ("lethe-recordings", "root/calls/", 62)]
    assert all(r["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
               for r in printed["rules"])
    assert printed["excluded"] == [{"dataset": "statements", "reason":
                                    "its rules test metadata, which lifecycle filters cannot"}]
    assert printed["applied"] is False and len(printed["drift"]) == 2
    rt = runtime(policy)
    codes = {(f.code, f.severity) for f in check(rt.catalog).findings}
    rt.close()
    assert ("lifecycle-drift", "warning") in codes  # missing: run still enforces

    applied = _lethe(policy, "lifecycle", "--apply")["stores"]["files"]
    assert applied["applied"] is True
    ids = [r["ID"] for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]]
    assert sorted(ids) == ["lethe-exports", "lethe-recordings", "team-logs"]
    rt = runtime(policy)
    assert not [f for f in check(rt.catalog).findings if f.code.startswith("lifecycle")]
    rt.close()

    # someone shortens lethe's rule on the bucket: the bucket would delete early
    rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    for rule in rules:
        if rule["ID"] == "lethe-recordings":
            rule["Expiration"] = {"Days": 7}
    client.put_bucket_lifecycle_configuration(Bucket=bucket,
                                              LifecycleConfiguration={"Rules": rules})
    rt = runtime(policy)
    found = {(f.code, f.severity, f.path) for f in check(rt.catalog).findings}
    rt.close()
    assert ("lifecycle-drift", "error", "stores.files") in found
    assert ("lifecycle-early", "error", "datasets.recordings") in found

    # a hold on a subject reaching `exports` takes its rule off the bucket at once
    placed = _lethe(policy, "hold", "place", "--subject", "user:3", "--reason", "case")
    assert placed["lifecycle_withdrawn"] == ["lethe-exports"]
    ids = [r["ID"] for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]]
    assert "lethe-exports" not in ids and "team-logs" in ids
    again = _lethe(policy, "lifecycle", "--apply")["stores"]["files"]
    assert {"dataset": "exports", "reason": "a legal hold reaches it"} in again["excluded"]
    ids = [r["ID"] for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]]
    assert sorted(ids) == ["lethe-recordings", "team-logs"]
    client.close()
