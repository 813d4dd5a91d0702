"""A workspace's termination (issue 22, item 3): every row of the workspace in every
store, by each dataset's erasure setting, after its recovery window, holds honoured, one
signed certificate; nothing of another workspace touched."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.control.requests import RequestStore
from lethe.errors import UsageError
from lethe.holds import parse_scope, place_hold, release_hold
from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.requests.service import reject, run_request
from lethe.requests.termination import open_termination
from tests.fixtures import (
    NOW,
    build_app,
    events,
    ids,
    invoices,
    profiles,
    runtime,
    sessions,
    users,
    write_policy,
)

TERMS = {"within": "90d", "recover_for": "30d"}
WS_A_USERS = {1, 2, 3, 4, 5}


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in (users, sessions, invoices, profiles, events)}


def _ws_b_rows(engine: sa.Engine) -> dict[str, set[int]]:
    return {"users": ids(engine, users, users.c.workspace_id == "ws_b"),
            "sessions": ids(engine, sessions, sessions.c.user_id > 5),
            "events": ids(engine, events, events.c.workspace_id == "ws_b")}


def test_a_workspace_is_erased_after_its_recovery_window_and_certified(
        app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url, termination=TERMS)
    before_b = _ws_b_rows(engine)
    ws_a_events = ids(engine, events, events.c.workspace_id == "ws_a")
    rt = runtime(policy, NOW)
    record = open_termination(rt, "ws_a")
    assert record.subject_kind == "workspace" and record.workspace == "ws_a"
    assert record.due_at == NOW + timedelta(days=90)
    assert open_termination(rt, "ws_a").id == record.id  # not doubled
    waiting = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert waiting.record.status == "in_progress"
    assert waiting.record.note is not None and "recoverable until" in waiting.record.note
    assert ids(engine, users, users.c.workspace_id == "ws_a") == WS_A_USERS  # untouched

    rt = runtime(policy, NOW + timedelta(days=31))
    done = run_request(rt, record.id, tmp_path / "out")
    kept = RequestStore(rt.control.engine).get(record.id)
    rt.close()
    assert done.record.status == "completed", done.record.note
    assert kept.identities == {}  # scrubbed on completion
    assert ids(engine, users, users.c.workspace_id == "ws_a") == set()
    assert ids(engine, events, events.c.workspace_id == "ws_a") == set()
    assert ids(engine, sessions, sessions.c.user_id.in_(WS_A_USERS)) == set()
    # retain: the invoices stay, with their legal basis; anonymize: profiles scrubbed
    assert ids(engine, invoices, invoices.c.user_id.in_(WS_A_USERS)) == WS_A_USERS
    with engine.connect() as conn:
        bios = conn.execute(sa.select(profiles.c.bio).where(
            profiles.c.user_id.in_(WS_A_USERS) | profiles.c.user_id.is_(None))).scalars().all()
    assert bios and all(b != "bio 1" and not str(b).startswith("bio ") for b in bios)
    assert _ws_b_rows(engine) == before_b  # the other workspace: untouched
    datasets = done.as_dict()["datasets"]
    assert datasets["users"]["erased"] == 5 and datasets["users"]["rows"] == 5
    assert datasets["events"]["erased"] == len(ws_a_events)
    assert datasets["sessions"]["erased"] == 10
    assert datasets["invoices"]["retained"] == 5 and datasets["invoices"]["erased"] == 0
    assert done.certificate is not None
    document = load_certificate(done.certificate)
    assert verify_certificate(document).ok
    assert document["certificate"]["subject"]["kind"] == "workspace"
    assert document["certificate"]["subject"]["fingerprint"] == record.fingerprint


def test_a_hold_keeps_its_rows_and_the_termination_open_until_released(
        app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url, termination={"within": "60d"})
    rt = runtime(policy, NOW)
    hold = place_hold(rt.control, rt.audit, rt.clock,
                      parse_scope(rt.policy, "user:3", None, None), "litigation")
    record = open_termination(rt, "ws_a")
    first = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert first.record.status == "in_progress"
    assert first.record.note is not None and f"hold {hold}" in first.record.note
    assert ids(engine, users, users.c.workspace_id == "ws_a") == {3}
    assert ids(engine, sessions, sessions.c.user_id.in_(WS_A_USERS)) == {30, 31}
    assert first.certificate is None

    rt = runtime(policy, NOW + timedelta(days=1))
    release_hold(rt.control, rt.audit, rt.clock, hold, "settled")
    second = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert second.record.status == "completed", second.record.note
    assert ids(engine, users, users.c.workspace_id == "ws_a") == set()
    report = second.as_dict()["datasets"]
    assert report["users"]["rows"] == 5 and report["users"]["erased"] == 5  # the baseline
    assert report["sessions"]["rows"] == 10


def test_a_workspace_hold_keeps_everything_of_the_workspace(app_url: str,
                                                            tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url, termination={"within": "60d"})
    before = _counts(engine)
    rt = runtime(policy, NOW)
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, None, "ws_a", None),
               "audit")
    record = open_termination(rt, "ws_a")
    outcome = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert outcome.record.status == "in_progress"
    after = _counts(engine)
    assert after["users"] == before["users"] and after["events"] == before["events"]


def test_a_cancelled_termination_erases_nothing(app_url: str, tmp_path: Path) -> None:
    engine = build_app(app_url)
    policy = write_policy(tmp_path, app_url, termination=TERMS)
    before = _counts(engine)
    rt = runtime(policy, NOW)
    record = open_termination(rt, "ws_a")
    reject(rt, record.id, "the customer renewed")
    rt.close()
    rt = runtime(policy, NOW + timedelta(days=40))
    outcome = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert outcome.record.status == "rejected"
    assert _counts(engine) == before


def test_termination_needs_the_policy_section(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_app(url)
    rt = runtime(write_policy(tmp_path, url), NOW)
    with pytest.raises(UsageError, match="no `termination:`"):
        open_termination(rt, "ws_a")
    rt.close()


def test_the_api_opens_a_termination_for_organization_admins_and_runs_it(
        tmp_path: Path) -> None:
    from tests.api.support import served

    url = f"sqlite:///{tmp_path / 'app.db'}"
    with served(tmp_path, url, policy={"termination": {"within": "30d"}}) as s:
        refused = s.call("POST", "/v1/workspaces/ws_a/termination", role="admin",
                         scope="own")
        assert refused.status_code == 403, refused.text
        opened = s.call("POST", "/v1/workspaces/ws_a/termination")
        assert opened.status_code == 201, opened.text
        body = opened.json()
        assert body["workspace"] == "ws_a" and body["status"] == "received"
        ran = s.call("POST", f"/v1/requests/{body['id']}/run")
        assert ran.status_code == 200, ran.text
        assert ran.json()["status"] == "completed"
        shown = s.call("GET", f"/v1/requests/{body['id']}").json()
        assert shown["subject"] == "workspace" and shown["workspace"] == "ws_a"
        certificate = s.call("GET", f"/v1/requests/{body['id']}/certificate")
        assert certificate.status_code == 200
        assert certificate.json()["certificate"]["subject"]["kind"] == "workspace"
    engine = sa.create_engine(url)
    assert ids(engine, users, users.c.workspace_id == "ws_a") == set()
    assert ids(engine, users, users.c.workspace_id == "ws_b") == {6, 7, 8, 9, 10}


@pytest.mark.parametrize(("termination", "subjects", "message"), [
    ({"within": "30d", "recover_for": "30d"}, None,
     "termination: recover_for: the recovery window must end before"),
    ({"within": "30d", "recover_for": "1mo"}, None, "must end before"),
    ({"within": "forever"}, None, "termination: within: a termination is due a finite"),
    ({"within": "90d", "recover_for": "forever"}, None, "cannot be forever"),
    ({"within": "90d"}, {"workspace": {"dataset": "users", "identities": ["id"]}},
     "subjects.workspace: with `termination:` declared"),
])
def test_a_termination_policy_error_names_its_path(
        tmp_path: Path, termination: dict[str, str], subjects: dict[str, object] | None,
        message: str) -> None:
    from lethe.errors import PolicyError
    from lethe.policy.load import load_policy

    changes: dict[str, object] = {"termination": termination}
    if subjects is not None:
        changes["subjects"] = subjects
    with pytest.raises(PolicyError) as caught:
        load_policy(write_policy(tmp_path, "sqlite:///app.db", **changes))
    assert message in str(caught.value)


@pytest.mark.parametrize(("args", "message"), [
    (["erasure"], "give --subject KIND (a person) or --workspace ID"),
    (["erasure", "--workspace", "ws_a", "--identity", "id=1"], "--workspace alone"),
    (["access", "--workspace", "ws_a"], "--workspace alone terminates a workspace"),
    (["erasure", "--workspace", "\t"], "workspace id is empty"),
])
def test_the_cli_refuses_a_malformed_termination_in_one_line(
        tmp_path: Path, args: list[str], message: str) -> None:
    from tests.cli.test_cli import lethe

    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_app(url)
    policy = write_policy(tmp_path, url, termination=TERMS)
    proc = lethe("request", "open", *args, "--policy", str(policy))
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stderr and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_cli_opens_a_termination_and_says_when_it_is_due(tmp_path: Path) -> None:
    import json

    from tests.cli.test_cli import lethe

    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_app(url)
    policy = write_policy(tmp_path, url, termination=TERMS)
    common = ["--policy", str(policy), "--now", "2026-06-01T00:00:00Z", "--json"]
    opened = json.loads(lethe("request", "open", "erasure", "--workspace", "ws_b",
                              *common).stdout)
    assert opened["due"] == "2026-08-30T00:00:00+00:00"  # 90 days
    shown = json.loads(lethe("request", "show", str(opened["id"]), *common).stdout)
    assert shown["subject"] == "workspace" and shown["workspace"] == "ws_b"
    ran = lethe("request", "run", str(opened["id"]), "--out", str(tmp_path / "out"), *common)
    assert json.loads(ran.stdout)["status"] == "in_progress"  # within recover_for
