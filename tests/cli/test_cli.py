"""The `lethe` command as users and scripts see it: exit codes, JSON keys, one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import build_app, ids, sessions, write_policy

NOW = "2026-06-01T00:00:00Z"


def lethe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                           *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    data = json.loads(proc.stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture
def policy(tmp_path: Path, sqlite_url: str) -> Path:
    build_app(sqlite_url)
    return write_policy(tmp_path, sqlite_url)


def test_plan_json_has_the_contract_keys(policy: Path) -> None:
    proc = lethe("plan", "--policy", str(policy), "--now", NOW, "--json")
    assert proc.returncode == 0, proc.stderr
    data = as_json(proc)
    assert data["now"] == "2026-06-01T00:00:00+00:00"
    actions = data["actions"]
    assert isinstance(actions, list) and actions
    for action in actions:
        assert {"dataset", "rule", "action", "rows", "held"} <= set(action)
        assert action["rule"] is None or isinstance(action["rule"], int)
    assert {a["action"] for a in actions} >= {"delete", "soft-delete", "purge", "cascade",
                                             "anonymize"}
    assert all(a["rule"] is None for a in actions if a["action"] in {"purge", "cascade"})


def test_global_options_work_before_the_command(policy: Path) -> None:
    proc = lethe("--policy", str(policy), "--json", "--now", NOW, "plan")
    assert proc.returncode == 0, proc.stderr
    assert as_json(proc)["now"] == "2026-06-01T00:00:00+00:00"


def test_run_json_then_nothing_left(policy: Path, sqlite_url: str) -> None:
    proc = lethe("run", "--policy", str(policy), "--now", NOW, "--json", "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    data = as_json(proc)
    assert isinstance(data["run"], int)
    for action in data["actions"]:  # type: ignore[attr-defined]
        assert {"dataset", "rule", "action", "rows", "held", "done", "verified"} <= set(action)
        assert action["verified"] is True
    assert ids(build_engine(sqlite_url), sessions) and 10 not in ids(build_engine(sqlite_url),
                                                                     sessions)
    again = as_json(lethe("plan", "--policy", str(policy), "--now", NOW, "--json"))
    assert all(a["rows"] == 0 for a in again["actions"])  # type: ignore[attr-defined]


def build_engine(url: str):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    return sa.create_engine(url)


def test_hold_commands_round_trip(policy: Path) -> None:
    placed = lethe("hold", "place", "--policy", str(policy), "--subject", "user:3",
                   "--reason", "litigation 7", "--json")
    assert placed.returncode == 0, placed.stderr
    hold_id = as_json(placed)["id"]
    listed = as_json(lethe("hold", "list", "--policy", str(policy), "--json"))
    holds = listed["holds"]
    assert isinstance(holds, list)
    # the subject's key never in clear: the fingerprint its audit entry carries
    assert [{k: h[k] for k in ("id", "reason")} for h in holds] == [
        {"id": hold_id, "reason": "litigation 7"}]
    assert re.fullmatch(r"subject:user:[0-9a-f]{16}", holds[0]["scope"]), holds[0]["scope"]
    assert "placed_at" in holds[0]
    emailed = lethe("hold", "place", "--policy", str(policy), "--subject",
                    "user:user7@example.com", "--reason", "litigation 8")
    assert emailed.returncode == 0, emailed.stderr
    for args in (("--json",), ()):
        shown = lethe("hold", "list", "--policy", str(policy), *args)
        assert shown.returncode == 0 and "litigation 8" in shown.stdout
        assert "user7@example.com" not in shown.stdout + shown.stderr
        assert "user7" not in shown.stdout
    lethe("hold", "release", str(as_json(lethe("hold", "list", "--policy", str(policy),
                                              "--json"))["holds"][-1]["id"]),
          "--policy", str(policy))
    plan = as_json(lethe("plan", "--policy", str(policy), "--now", NOW, "--json"))
    assert any(a["held"] for a in plan["actions"])  # type: ignore[attr-defined]
    released = lethe("hold", "release", str(hold_id), "--policy", str(policy), "--json")
    assert released.returncode == 0
    assert as_json(lethe("hold", "list", "--policy", str(policy), "--json"))["holds"] == []
    again = lethe("hold", "release", str(hold_id), "--policy", str(policy))
    assert again.returncode == 2 and "no active hold" in again.stderr


@pytest.mark.parametrize(("args", "code", "message"), [
    (["plan", "--policy", "missing.yaml"], 2, "policy file not found"),
    (["plan", "--now", "yesterday"], 2, "--now: invalid ISO-8601 time"),
    (["plan", "--dataset", "nope"], 2, "--dataset: unknown dataset 'nope'"),
    (["hold", "place", "--subject", "ghost:1"], 2, "unknown subject kind"),
    (["run", "--batch-size", "0"], 2, ""),
])
def test_bad_input_is_one_line_exit_2(args: list[str], code: int, message: str,
                                      policy: Path) -> None:
    proc = lethe(*args, cwd=policy.parent)
    assert proc.returncode == code
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr


def test_malformed_policy_names_the_path(tmp_path: Path, sqlite_url: str) -> None:
    bad = write_policy(tmp_path, sqlite_url,
                       datasets__sessions__retention=[{"keep": "30 dayz", "after": "x"}])
    proc = lethe("plan", "--policy", str(bad), "--json")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    error = as_json(proc)["error"]
    assert error["path"] == "datasets.sessions.retention[0].keep"  # type: ignore[index]
    assert proc.stderr.strip().count("\n") == 0


def test_unknown_column_is_exit_2_and_nothing_deleted(tmp_path: Path, sqlite_url: str) -> None:
    engine = build_app(sqlite_url)
    before = ids(engine, sessions)
    bad = write_policy(tmp_path, sqlite_url,
                       datasets__sessions__retention=[{"keep": "1d", "after": "seen"}])
    proc = lethe("run", "--policy", str(bad), "--now", NOW)
    assert proc.returncode == 2
    assert "datasets.sessions.retention[0].after" in proc.stderr
    assert "'seen'" in proc.stderr
    assert ids(engine, sessions) == before


def test_check_exit_codes(policy: Path, sqlite_url: str) -> None:
    clean = lethe("check", "--policy", str(policy), "--json")
    assert clean.returncode == 0, clean.stdout
    assert as_json(clean) == {"ok": True, "findings": []}
    with build_engine(sqlite_url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scratch_copy (id INTEGER PRIMARY KEY, email TEXT)")
    dirty = lethe("check", "--policy", str(policy), "--json")
    assert dirty.returncode == 1
    findings = as_json(dirty)["findings"]
    assert [(f["code"], f["message"]) for f in findings] == [  # type: ignore[attr-defined]
        ("undeclared-table", "table 'scratch_copy' is not declared by any dataset")]


def test_schema_prints_json_schema() -> None:
    proc = lethe("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert "datasets" in schema["properties"]
    duration, from_data = schema["$defs"]["Rule"]["properties"]["keep"]["oneOf"]
    assert duration["pattern"]  # `keep: 30d`, or a period each row's parent sets
    assert from_data["$ref"] == "#/$defs/KeepFrom"
    assert {"default", "max"} <= set(schema["$defs"]["KeepFrom"]["required"])
    assert "from" in schema["$defs"]["KeepFrom"]["properties"]


def test_init_writes_a_loadable_starter(tmp_path: Path) -> None:
    proc = lethe("init", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "lethe.yaml").exists()
    again = lethe("init", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    proc = lethe("demo", "--dir", str(tmp_path / "demo"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = as_json(proc)
    assert report["ok"] is True
    assert sum(a["rows"] for a in report["plan"]["actions"]) > 10_000  # type: ignore[index]
    planned = [(a["dataset"], a["rule"], a["action"], a.get("parent"), a["rows"])
               for a in report["plan"]["actions"]]  # type: ignore[index]
    done = [(a["dataset"], a["rule"], a["action"], a.get("parent"), a["done"])
            for a in report["run"]["actions"]]  # type: ignore[index]
    assert planned == done  # what plan says is what run does, line by line, cascades too
    assert all(a["rows"] == 0 for a in report["after"]["actions"])  # type: ignore[index]
    assert report["check"]["ok"] is True  # type: ignore[index]
    assert report["erasure"]["status"] == "completed"  # type: ignore[index]
    assert report["erasure"]["certificate_ok"] is True  # type: ignore[index]
    assert report["audit"]["ok"] is True  # type: ignore[index]


def test_run_and_holds_leave_a_verifiable_audit_trail(policy: Path) -> None:
    placed = as_json(lethe("hold", "place", "--policy", str(policy), "--subject",
                           "user:user6@example.com", "--reason", "case 1", "--json"))
    assert lethe("run", "--policy", str(policy), "--now", NOW).returncode == 0
    lethe("hold", "release", str(placed["id"]), "--policy", str(policy))
    shown = as_json(lethe("audit", "show", "--policy", str(policy), "--json"))
    actions = [e["action"] for e in shown["entries"]]  # type: ignore[attr-defined]
    assert actions[0] == "hold.placed" and actions[-1] == "hold.released"
    assert "run.started" in actions and "run.finished" in actions
    assert "retention.purge" in actions and "retention.soft-delete" in actions
    assert "user6@example.com" not in json.dumps(shown)
    only_holds = as_json(lethe("audit", "show", "--policy", str(policy), "--json",
                               "--target", "hold"))
    assert {e["action"] for e in only_holds["entries"]} == {  # type: ignore[attr-defined]
        "hold.placed", "hold.released"}
    verdict = lethe("audit", "verify", "--policy", str(policy), "--json")
    assert verdict.returncode == 0
    data = as_json(verdict)
    assert data["ok"] is True and data["first_bad"] is None
    assert data["entries"] == len(actions)


def test_audit_verify_exits_1_and_names_the_entry(policy: Path, tmp_path: Path) -> None:
    assert lethe("run", "--policy", str(policy), "--now", NOW).returncode == 0
    export = tmp_path / "audit.jsonl"
    assert lethe("audit", "export", "--policy", str(policy), "--out", str(export)).returncode == 0
    offline = lethe("audit", "verify", "--file", str(export), "--json")
    assert offline.returncode == 0 and as_json(offline)["ok"] is True
    with build_engine(f"sqlite:///{policy.parent / 'state.db'}").begin() as conn:
        conn.exec_driver_sql("UPDATE lethe_audit SET details = '{}' WHERE seq = 3")
    broken = lethe("audit", "verify", "--policy", str(policy), "--json")
    assert broken.returncode == 1
    assert {k: as_json(broken)[k] for k in ("ok", "first_bad")} == {"ok": False, "first_bad": 3}
    human = lethe("audit", "verify", "--policy", str(policy))
    assert human.returncode == 1 and "sequence 3" in human.stdout


def test_init_creates_a_private_organization_key(tmp_path: Path) -> None:
    assert lethe("init", cwd=tmp_path).returncode == 0
    key = tmp_path / ".lethe" / "organization.key"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    kek = tmp_path / ".lethe" / "kek.json"
    assert kek.exists() and (kek.stat().st_mode & 0o777) == 0o600
    proc = lethe("init", "--force", cwd=tmp_path)
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr


def test_request_commands_follow_the_json_contract(policy: Path, tmp_path: Path) -> None:
    opened = lethe("request", "open", "erasure", "--subject", "user", "--identity",
                   "email=user8@example.com", "--policy", str(policy), "--json", "--now", NOW)
    assert opened.returncode == 0, opened.stderr
    data = as_json(opened)
    assert set(data) == {"id", "status", "due"} and data["status"] == "received"
    rid = str(data["id"])
    out = tmp_path / "requests"
    first = as_json(lethe("request", "run", rid, "--policy", str(policy), "--now", NOW,
                          "--out", str(out), "--json"))
    assert first["status"] == "in_progress"
    done = lethe("request", "run", rid, "--policy", str(policy), "--now",
                 "2026-07-15T00:00:00Z", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = as_json(done)
    assert result["status"] == "completed"
    for counts in result["datasets"].values():  # type: ignore[attr-defined]
        assert set(counts) == {"rows", "erased", "retained", "held"}
    certificate = Path(str(result["certificate"]))
    ok = lethe("certificate", "verify", str(certificate), "--json")
    assert ok.returncode == 0 and as_json(ok)["ok"] is True
    document = json.loads(certificate.read_text())
    document["certificate"]["datasets"][0]["rows"] += 1
    document["certificate"]["totals"]["rows"] += 1
    certificate.write_text(json.dumps(document))
    bad = lethe("certificate", "verify", str(certificate), "--json")
    assert bad.returncode == 1 and as_json(bad)["ok"] is False
    listed = as_json(lethe("request", "list", "--policy", str(policy), "--json"))
    assert [r["status"] for r in listed["requests"]] == ["completed"]  # type: ignore[index]
    assert "user8@example.com" not in json.dumps(listed)
    shown = as_json(lethe("request", "show", rid, "--policy", str(policy), "--json"))
    assert shown["identities"] == [] and shown["certificate"]


def test_request_open_rejects_unknown_identities(policy: Path) -> None:
    proc = lethe("request", "open", "access", "--subject", "user", "--identity", "phone=1",
                 "--policy", str(policy))
    assert proc.returncode == 2 and "not an identity" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_audit_verify_on_a_fresh_store_without_a_key_reports_an_empty_valid_log(
        tmp_path: Path) -> None:
    policy = tmp_path / "lethe.yaml"
    policy.write_text("lethe: 1\norganization: T\ncontrol: sqlite:///state.db\n"
                      "stores: {app: {url: 'sqlite:///app.db'}}\ndatasets: {}\n")
    proc = lethe("audit", "verify", "--policy", str(policy))
    assert proc.returncode == 0, proc.stderr
    assert "0 entries" in proc.stdout
    assert not (tmp_path / ".lethe" / "organization.key").exists()  # verifying makes no key
