"""The API's guarantees besides the role matrix: keys, impersonation, limits, errors,
workspace confinement of requests, and the served OpenAPI document."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.commands.keys import authenticator, revoke_api_key
from lethe.control.api_keys import ApiKeyStore
from lethe.control.workspaces import WorkspaceRegions
from lethe.crypto.secrets import hash_secret, new_key_id, new_secret, token_for
from lethe.requests.certificate import verify_certificate
from lethe.requests.service import open_many, run_many
from lethe.stores.sql import normalize_url
from tests.api.support import Served, served
from tests.fixtures import NOW, runtime, users

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Served]:
    with served(tmp_path, f"sqlite:///{tmp_path / 'app.db'}") as s:
        yield s


def _dump_database(url: str) -> str:
    """Every value of every table, as text."""
    engine = sa.create_engine(normalize_url(url))
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        text = "\n".join(repr(row) for table in meta.sorted_tables
                         for row in conn.execute(sa.select(table)))
    engine.dispose()
    return text


def test_a_keys_plaintext_is_never_stored_or_logged(api: Served, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    token = api.new_key("privacy", "ws_a")
    secret = token.split("_", 2)[2]
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            assert api.client.get("/v1/requests",
                                  headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert api.client.get("/v1/requests", headers={
            "Authorization": f"Bearer {token[:-2]}xx"}).status_code == 401
    stored = _dump_database(api.runtime.policy.control)
    assert "scrypt$32768$8$1$" in stored  # n = 2^15, r = 8, p = 1
    assert secret not in stored and token not in stored
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert secret not in logged
    key_id = token.split("_")[1]
    assert ApiKeyStore(api.runtime.control.engine).get(key_id).last_used_at is not None


def test_a_revoked_key_is_refused_at_once_even_when_remembered(api: Served) -> None:
    token = api.new_key("admin", "__org__")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/v1/holds", headers=headers).status_code == 200  # now remembered
    revoke_api_key(api.runtime, token.split("_")[1])
    refused = api.client.get("/v1/holds", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"


def test_a_wrong_secret_for_a_real_key_id_is_refused(api: Served) -> None:
    token = api.new_key("admin", "__org__")
    key_id = token.split("_")[1]
    forged = token_for(key_id, new_secret())
    assert api.client.get("/v1/holds",
                          headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_an_expired_key_is_refused(api: Served) -> None:
    store = ApiKeyStore(api.runtime.control.engine)
    key_id, secret = new_key_id(), new_secret()
    store.add(key_id, hash_secret(secret), "admin", "__org__", "old", datetime.now(UTC),
              "test", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert authenticator(api.runtime).key_for(token_for(key_id, secret)) is None


def test_impersonation_is_time_limited_audited_and_marked(api: Served) -> None:
    too_long = api.call("POST", "/v1/impersonations", json={
        "workspace": "ws_a", "role": "privacy", "minutes": 61, "reason": "ticket 9"})
    assert too_long.status_code == 422
    issued = api.call("POST", "/v1/impersonations", json={
        "workspace": "ws_a", "role": "privacy", "minutes": 30, "reason": "ticket 9"})
    assert issued.status_code == 201, issued.text
    token, admin = issued.json()["token"], api.key_ids["admin", "org"]
    expires = datetime.fromisoformat(issued.json()["expires_at"])
    assert timedelta(minutes=29) < expires - datetime.now(UTC) <= timedelta(minutes=30)
    headers = {"Authorization": f"Bearer {token}"}
    listed = api.client.get("/v1/requests", headers=headers)
    assert listed.status_code == 200
    assert listed.headers["Lethe-Impersonated-By"] == f"key:{admin}"
    denied = api.client.get("/v1/runs", headers=headers)  # a workspace role: no runs
    assert denied.status_code == 403
    assert denied.headers["Lethe-Impersonated-By"] == f"key:{admin}"
    assert api.call("GET", "/v1/requests").headers.get("Lethe-Impersonated-By") is None
    chained = api.client.post("/v1/impersonations", headers=headers, json={
        "workspace": "ws_a", "role": "admin", "minutes": 5, "reason": "again"})
    assert chained.status_code == 403
    created = api.runtime.audit.entries(action="api.key.created")[-1]
    assert f'"impersonator":"{admin}"' in created.details and created.reason == "ticket 9"
    made = [e for e in api.runtime.audit.entries(action="api.call")
            if f"impersonated by key:{admin}" in e.actor]
    assert len(made) >= 3 and all(f'"impersonator":"{admin}"' in e.details for e in made)
    # Revoking the admin key ends its impersonations too.
    revoke_api_key(api.runtime, admin)
    assert api.client.get("/v1/requests", headers=headers).status_code == 401


def test_rate_limit_per_key(tmp_path: Path) -> None:
    with served(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", per_minute=3) as api:
        codes = [api.call("GET", "/v1/holds").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = api.call("GET", "/v1/holds")
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        assert api.call("GET", "/v1/holds", "privacy").status_code == 200  # another key


def test_request_size_limit_declared_and_chunked(tmp_path: Path) -> None:
    with served(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", max_body=200) as api:
        big = {"workspace": "ws_a", "reason": "x" * 500}
        declared = api.call("POST", "/v1/holds", json=big)
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "payload_too_large"
        chunked = api.client.post(
            "/v1/holds", content=iter([b'{"reason": "', b"x" * 300, b'", "workspace": "ws_a"}']),
            headers={**api.headers(), "Content-Type": "application/json"})
        assert chunked.status_code == 413
        assert api.runtime.control.holds() == []
        small = api.call("POST", "/v1/holds", json={"workspace": "ws_a", "reason": "ok"})
        assert small.status_code == 201


def test_errors_are_json_with_stable_codes_and_never_echo_values(api: Served) -> None:
    missing = api.call("GET", "/v1/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_method = api.call("DELETE", "/v1/requests")
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    bad = api.call("POST", "/v1/requests", json={
        "kind": "shred-everything", "subject": "user",
        "identities": {"email": "someone.private@example.com"}})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    assert "someone.private" not in bad.text and "shred-everything" not in bad.text
    unknown_identity = api.call("POST", "/v1/requests", json={
        "kind": "access", "subject": "user", "identities": {"ssn": "078-05-1120"}})
    assert unknown_identity.status_code == 422
    assert "078-05-1120" not in unknown_identity.text
    assert api.call("GET", "/v1/requests/9999").json()["error"]["code"] == "not_found"
    garbage = api.client.get("/v1/holds", headers={"Authorization": "Bearer nonsense"})
    assert garbage.status_code == 401 and garbage.headers["WWW-Authenticate"] == "Bearer"


def test_workspace_region_is_validated_audited_and_stored(api: Served) -> None:
    assert api.call("PATCH", "/v1/workspaces/ws_a", json={"region": "mars"}).status_code == 422
    api.runtime.policy.regions.extend(["us", "eu"])
    try:
        changed = api.call("PATCH", "/v1/workspaces/ws_a", "admin", "own",
                           json={"region": "eu"})
        assert changed.status_code == 200, changed.text
        stored = WorkspaceRegions(api.runtime.control.engine).get("ws_a")
        assert stored is not None and stored.region == "eu"
        assert api.call("GET", "/v1/workspaces/ws_a", "auditor", "own").json()["region"] == "eu"
        cleared = api.call("PATCH", "/v1/workspaces/ws_a", json={"region": None})
        assert cleared.json()["region"] is None
    finally:
        api.runtime.policy.regions.clear()
    entries = api.runtime.audit.entries(action="workspace.region", target="workspace:ws_a")
    assert [json.loads(e.details)["region"] for e in entries] == ["eu", None]


def test_the_served_openapi_document_is_the_checked_in_one(api: Served) -> None:
    served_doc = api.client.get("/v1/openapi.json").json()
    assert served_doc == json.loads(OPENAPI.read_text(encoding="utf-8")), \
        "regenerate: lethe serve --openapi > docs/openapi.json"
    assert "/v1/requests" in served_doc["paths"]


def _users(api: Served) -> set[int]:
    engine = sa.create_engine(normalize_url(api.runtime.policy.stores["app"].url))
    with engine.connect() as conn:
        found = set(conn.execute(sa.select(users.c.id).where(users.c.deleted_at.is_(None)))
                    .scalars())
    engine.dispose()
    return found


def test_a_workspace_request_never_reaches_another_workspaces_subject(
        tmp_path: Path, app_url: str) -> None:
    """user1 lives in ws_a. ws_b's key asks to erase user1's email: nothing of ws_a is
    touched. ws_a's key asks for user1's data: it gets it."""
    control = app_url if app_url.startswith("postgresql") else None
    with served(tmp_path, app_url, control=control) as api:
        before = _users(api)
        opened = api.call("POST", "/v1/requests", "privacy", "other", json={
            "kind": "erasure", "subject": "user", "identities": {"email": "user1@example.com"}})
        assert opened.status_code == 201
        ran = api.call("POST", f"/v1/requests/{opened.json()['id']}/run", "privacy", "other")
        assert ran.status_code == 200, ran.text
        assert sum(d["rows"] for d in ran.json()["datasets"].values()) == 0
        assert _users(api) == before
        access = api.call("POST", "/v1/requests", "privacy", "own", json={
            "kind": "access", "subject": "user", "identities": {"email": "user1@example.com"}})
        rid = access.json()["id"]
        result = api.call("POST", f"/v1/requests/{rid}/run", "privacy", "own").json()
        assert result["status"] == "completed" and result["datasets"]["users"]["rows"] == 1
        assert result["export"] == f"/v1/requests/{rid}/export"
        export = api.call("GET", result["export"], "privacy", "own")
        assert export.status_code == 200 and export.content[:2] == b"PK"
        assert api.call("GET", result["export"], "privacy", "other").status_code == 404


def test_the_monthly_report_counts_what_the_api_did(api: Served) -> None:
    run = api.call("POST", "/v1/runs", json={"datasets": ["sessions"]})
    assert run.status_code == 202
    api.app.state.lethe.heavy.acquire(timeout=60)  # the run goes on in the background
    api.app.state.lethe.heavy.release()
    shown = api.call("GET", f"/v1/runs/{run.json()['run']}").json()
    assert shown["status"] == "completed"
    deleted = sum(a["done"] for a in shown["actions"])
    assert deleted > 0
    month = api.runtime.clock.now().strftime("%Y-%m")
    report = api.call("GET", f"/v1/reports/{month}", "auditor").json()
    assert report["month"] == month
    assert sum(d["rows"] for d in report["daily"] if d["dataset"] == "sessions") == deleted
    html = api.call("GET", f"/v1/reports/{month}?format=html", "auditor")
    assert html.headers["content-type"].startswith("text/html") and "<svg" in html.text
    assert api.call("GET", "/v1/reports/2026-13", "auditor").status_code == 422


def test_a_bulk_erasures_certificate_is_served_from_the_control_store(api: Served) -> None:
    policy = api.directory / "lethe.yaml"
    rt = runtime(policy)
    records = open_many(rt, "erasure", "user", [["id=4"]], workspace="ws_a")
    run_many(rt, [r.id for r in records], api.directory / "bulk")
    rt.close()
    later = runtime(policy, NOW + timedelta(days=31))
    run_many(later, [r.id for r in records], api.directory / "bulk")
    later.close()
    assert not (api.directory / "bulk").exists()
    path = f"/v1/requests/{records[0].id}/certificate"
    served_json = api.call("GET", path, "auditor", "own")
    assert served_json.status_code == 200
    assert verify_certificate(served_json.json()).ok
    served_html = api.call("GET", f"{path}?format=html", "auditor", "own")
    assert served_html.headers["content-type"].startswith("text/html")
    assert "<html" in served_html.text and records[0].fingerprint[:12] in served_html.text
    assert api.call("GET", path, "auditor", "other").status_code == 404


def test_a_workspace_key_holds_only_subjects_wholly_in_its_workspace(api: Served) -> None:
    """user1 is in ws_a, user7 in ws_b: ws_a may hold user1 (by id or e-mail), not user7,
    and a key that names no row at all holds nothing."""
    def place(subject: str) -> int:
        return int(api.call("POST", "/v1/holds", "privacy", "own",
                            json={"subject": subject, "reason": "case"}).status_code)

    assert place("user:1") == 201
    assert place("user:user1@example.com") == 201
    assert place("user:7") == 404
    assert place("user:no-such-user") == 404
    assert place("nobody:1") == 422
    scopes = {h.scope for h in api.runtime.control.holds()}
    assert scopes == {"subject:user:1", "subject:user:user1@example.com"}
    listed = api.call("GET", "/v1/holds", "privacy", "own")
    assert listed.status_code == 200 and len(listed.json()["holds"]) == 2
    assert "user1@example.com" not in listed.text  # fingerprints, never the key
    # the organization may hold anyone, including a dataset
    assert api.call("POST", "/v1/holds", json={"subject": "user:7", "reason": "x"}
                    ).status_code == 201
    assert api.call("POST", "/v1/holds", "privacy", "own",
                    json={"dataset": "users", "reason": "x"}).status_code == 403


def test_the_audit_log_never_holds_an_email_typed_into_a_path_or_a_reason(api: Served) -> None:
    """Issue 17, item 4: audit entries can never be edited, so a value that is not an id
    is fingerprinted in a target and masked in free text."""
    email = "ann.private@example.com"
    looked_up = api.call("GET", f"/v1/workspaces/{email}")
    assert looked_up.status_code == 200
    placed = api.call("POST", "/v1/holds", json={
        "dataset": "sessions",
        "reason": f"litigation; contact {email}, card 4242 4242 4242 4242"})
    assert placed.status_code == 201, placed.text
    entries = api.runtime.audit.entries()
    text = "\n".join(f"{e.target} {e.reason} {e.details}" for e in entries)
    assert email not in text and "4242 4242 4242 4242" not in text
    call = [e for e in entries if e.action == "api.call"
            and json.loads(e.details)["action"] == "workspaces.read"][-1]
    assert call.target.startswith("workspace:fp:") and len(call.target) == len("workspace:fp:") + 16
    hold = [e for e in entries if e.action == "hold.placed"][-1]
    assert hold.reason.startswith("litigation; contact ") and "example.com" in hold.reason
    # an id keeps its name
    assert api.call("GET", "/v1/workspaces/ws_a").status_code == 200
    assert api.runtime.audit.entries(action="api.call")[-1].target == "workspace:ws_a"
