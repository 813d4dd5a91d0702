"""Redis datasets against the real server: a maximum TTL that `run` enforces (SCAN, a
page at a time, `EXPIRE … LT`), `check` reports, holds keep a subject's keys, and
erasure removes a subject's keys through the `per_subject` template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
import yaml

from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.errors import PolicyError
from lethe.governance.check import check
from lethe.holds import parse_scope, place_hold
from lethe.policy.load import load_policy
from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.requests.service import open_request, run_request
from tests.fixtures import NOW, build_app, runtime, write_policy

HOUR = 3600


def _policy(tmp_path: Path, app_url: str, redis_url: str, prefix: str,
            **sessions: Any) -> Path:
    path = write_policy(tmp_path, app_url)
    data = yaml.safe_load(path.read_text())
    data["stores"]["cache"] = {"url": redis_url}
    data["datasets"]["web_sessions"] = {
        "store": "cache", "pattern": f"{prefix}:session:*", "class": "operational",
        "per_subject": {"user": f"{prefix}:session:{{id}}:*"},
        "retention": [{"keep": "1h"}], **sessions}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _fill(client: redis.Redis, prefix: str) -> dict[str, int | None]:
    """Users 1-10 (and 30, 31 to catch prefix mix-ups): keys with no TTL, too long a TTL,
    and a short one. Returns key -> TTL set (None: none)."""
    plan: dict[str, int | None] = {}
    for user in (*range(1, 11), 30, 31):
        plan[f"{prefix}:session:{user}:a"] = None
        plan[f"{prefix}:session:{user}:b"] = 2 * HOUR
        plan[f"{prefix}:session:{user}:c"] = 600
    plan[f"{prefix}:other:1"] = None  # outside the dataset's pattern
    for key, ttl in plan.items():
        client.set(key, "v", ex=ttl)
    return plan


def test_run_caps_ttls_skips_held_subjects_and_verifies(sqlite_url: str, tmp_path: Path,
                                                        redis_space: tuple[str, str]) -> None:
    url, prefix = redis_space
    client = redis.Redis.from_url(url)
    build_app(sqlite_url)
    _fill(client, prefix)
    rt = runtime(_policy(tmp_path, sqlite_url, url, prefix))
    findings = check(rt.catalog, None, NOW).findings
    ttl = [f for f in findings if f.code == "ttl-exceeded"]
    assert len(ttl) == 1 and ttl[0].severity == "error" and "24 keys" in ttl[0].message
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, "user:7", None, None),
               "case 7")
    plan = build_plan(rt, ["web_sessions"])
    [action] = plan.actions
    assert (action.step.action, action.rows, action.held) == ("expire", 22, 2)
    result = execute(rt, plan, batch_size=5)
    [done] = result.actions
    assert done.done == 22 and done.verified is True
    for user in (*range(1, 11), 30, 31):
        ttls = {k: client.ttl(f"{prefix}:session:{user}:{k}") for k in "abc"}
        if user == 7:  # held: left exactly as it was
            assert ttls["a"] == -1 and HOUR < ttls["b"] <= 2 * HOUR
        else:
            assert 0 < ttls["a"] <= HOUR and 0 < ttls["b"] <= HOUR
        assert 0 < ttls["c"] <= 600  # LT: a shorter TTL is never lengthened
    assert client.ttl(f"{prefix}:other:1") == -1  # not the dataset's
    assert build_plan(rt, ["web_sessions"]).actions[0].rows == 0
    assert [f.code for f in check(rt.catalog, None, NOW).findings
            if f.code == "ttl-exceeded"] == ["ttl-exceeded"]  # the held keys still do
    rt.close()
    client.close()


def test_erasure_removes_exactly_the_subjects_keys(app_url: str, tmp_path: Path,
                                                   redis_space: tuple[str, str]) -> None:
    url, prefix = redis_space
    client = redis.Redis.from_url(url)
    build_app(app_url)
    _fill(client, prefix)
    policy = _policy(tmp_path, app_url, url, prefix)
    rt = runtime(policy, NOW)
    record = open_request(rt, "erasure", "user", ["id=3"])
    run_request(rt, record.id, tmp_path / "out")  # soft-delete phase: keys untouched
    assert client.exists(f"{prefix}:session:3:a") == 1
    rt.close()
    from datetime import timedelta
    rt = runtime(policy, NOW + timedelta(days=31))
    done = run_request(rt, record.id, tmp_path / "out")
    assert done.record.status == "completed"
    assert done.as_dict()["datasets"]["web_sessions"] == {
        "rows": 3, "erased": 3, "retained": 0, "held": 0}
    assert client.keys(f"{prefix}:session:3:*") == []
    assert len(client.keys(f"{prefix}:session:30:*")) == 3  # 30 is not 3
    assert done.certificate is not None
    document = load_certificate(done.certificate)
    assert verify_certificate(document).ok
    assert {"dataset": "web_sessions", "rows": 3, "erased": 3} .items() <= \
        next(d for d in document["certificate"]["datasets"]
             if d["dataset"] == "web_sessions").items()

    # a subject held after its soft delete keeps its keys at the erasure phase, and its
    # request stays open naming the hold
    held = open_request(rt, "erasure", "user", ["id=5"])
    run_request(rt, held.id, tmp_path / "out")  # soft-delete phase
    hold = place_hold(rt.control, rt.audit, rt.clock,
                      parse_scope(rt.policy, "user:user5@example.com", None, None), "case 5")
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=62))
    outcome = run_request(rt, held.id, tmp_path / "out")
    rt.close()
    assert outcome.record.status == "in_progress" and f"hold {hold}" in (outcome.record.note or "")
    assert outcome.as_dict()["datasets"]["web_sessions"]["held"] == 3
    assert len(client.keys(f"{prefix}:session:5:*")) == 3
    client.close()


@pytest.mark.parametrize(("change", "message"), [
    ({"retention": [{"keep": "1h", "after": "created_at"}]}, "a cache rule is only `keep:`"),
    ({"retention": [{"keep": "forever"}]}, "cannot be forever"),
    ({"per_subject": {"user": "session:*"}}, "names no {column}"),
    ({"per_subject": {"customer": "session:{id}"}}, "unknown subject kind 'customer'"),
    ({"fields": {"x": {"class": "pii"}}}, "keys, not columns"),
])
def test_cache_dataset_mistakes_are_policy_errors(tmp_path: Path, change: dict[str, Any],
                                                  message: str) -> None:
    path = _policy(tmp_path, "sqlite:///app.db", "redis://127.0.0.1:6379/0", "p", **change)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert message in str(caught.value)
    assert "datasets.web_sessions" in str(caught.value)


def test_access_export_carries_the_subjects_keys(sqlite_url: str, tmp_path: Path,
                                                 redis_space: tuple[str, str]) -> None:
    import json
    import zipfile

    url, prefix = redis_space
    client = redis.Redis.from_url(url)
    build_app(sqlite_url)
    client.set(f"{prefix}:session:4:a", "token-a", ex=600)
    client.hset(f"{prefix}:session:4:prefs", mapping={"theme": "dark"})
    client.set(f"{prefix}:session:40:a", "not theirs")
    rt = runtime(_policy(tmp_path, sqlite_url, url, prefix))
    outcome = run_request(rt, open_request(rt, "access", "user", ["id=4"]).id, tmp_path / "o")
    rt.close()
    assert outcome.export is not None
    with zipfile.ZipFile(outcome.export) as archive:
        keys = json.loads(archive.read("web_sessions.json"))
    by_key = {k["key"]: k for k in keys}
    assert set(by_key) == {f"{prefix}:session:4:a", f"{prefix}:session:4:prefs"}
    assert by_key[f"{prefix}:session:4:a"]["value"] == "token-a"
    assert 0 < by_key[f"{prefix}:session:4:a"]["ttl_seconds"] <= 600
    assert by_key[f"{prefix}:session:4:prefs"]["value"] == {"theme": "dark"}
    assert by_key[f"{prefix}:session:4:prefs"]["type"] == "hash"
    client.close()


def test_a_held_key_keeps_its_subject_row_until_released(sqlite_url: str, tmp_path: Path,
                                                         redis_space: tuple[str, str]) -> None:
    """A dataset hold on the keys: deleting the user row would lose the only way to find
    them again, so the row stays (counted as held) and the request stays open."""
    from datetime import timedelta

    from lethe.holds import release_hold

    url, prefix = redis_space
    client = redis.Redis.from_url(url)
    engine = build_app(sqlite_url)
    client.set(f"{prefix}:session:2:a", "x")
    policy = _policy(tmp_path, sqlite_url, url, prefix)
    rt = runtime(policy, NOW)
    record = open_request(rt, "erasure", "user", ["id=2"])
    run_request(rt, record.id, tmp_path / "out")  # soft-delete phase
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=31))
    hold = place_hold(rt.control, rt.audit, rt.clock,
                      parse_scope(rt.policy, None, None, "web_sessions"), "keys")
    held = run_request(rt, record.id, tmp_path / "out")
    assert held.record.status == "in_progress"
    assert held.as_dict()["datasets"]["users"] == {"rows": 1, "erased": 0, "retained": 0,
                                                   "held": 1}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM users WHERE id = 2")).scalar() == 1
    release_hold(rt.control, rt.audit, rt.clock, hold, "done")
    done = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert done.record.status == "completed"
    assert done.as_dict()["datasets"]["web_sessions"]["erased"] == 1
    assert client.exists(f"{prefix}:session:2:a") == 0
    client.close()
