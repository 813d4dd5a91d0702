"""Every endpoint by every role by organization / own workspace / other workspace.

The expected roles are written out here from the issue (admin: everything; privacy:
requests and holds; auditor: read-only audit, reports, certificates — and runs;
service: opening requests only), not read from the code under test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api.support import SCOPES, Served, completed_erasure, served

ROLES = ("admin", "privacy", "auditor", "service")


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # may name {request}, {erasure}, {hold}, {run}
    roles: frozenset[str]
    org_only: bool = False
    # What a key of another workspace gets for ws_a's resource: 403, 404, or
    # "filtered" (a list that answers 200 without ws_a's records).
    other: int | str | None = None
    body: Callable[[Served], Any] | None = None
    ok: int = 200


CASES = [
    Case("open request", "POST", "/v1/requests", frozenset({"admin", "privacy", "service"}),
         other=403, ok=201,
         body=lambda s: {"kind": "access", "subject": "user", "workspace": "ws_a",
                         "identities": {"email": "user2@example.com"}}),
    Case("list requests", "GET", "/v1/requests", frozenset({"admin", "privacy"}),
         other="filtered"),
    Case("show request", "GET", "/v1/requests/{request}", frozenset({"admin", "privacy"}),
         other=404),
    Case("run request", "POST", "/v1/requests/{request}/run", frozenset({"admin", "privacy"}),
         other=404),
    Case("download export", "GET", "/v1/requests/{request}/export",
         frozenset({"admin", "privacy"}), other=404),
    Case("download certificate", "GET", "/v1/requests/{erasure}/certificate",
         frozenset({"admin", "privacy", "auditor"}), other=404),
    Case("certificate as HTML", "GET", "/v1/requests/{erasure}/certificate?format=html",
         frozenset({"admin", "privacy", "auditor"}), other=404),
    Case("list holds", "GET", "/v1/holds", frozenset({"admin", "privacy"}), other="filtered"),
    Case("place hold", "POST", "/v1/holds", frozenset({"admin", "privacy"}), other=403,
         ok=201, body=lambda s: {"workspace": "ws_a", "reason": "case 7"}),
    Case("release hold", "POST", "/v1/holds/{hold}/release", frozenset({"admin", "privacy"}),
         other=404, body=lambda s: {"reason": "closed"}),
    Case("trigger run", "POST", "/v1/runs", frozenset({"admin"}), org_only=True, ok=202,
         body=lambda s: {"datasets": ["sessions"]}),
    Case("list runs", "GET", "/v1/runs", frozenset({"admin", "auditor"}), org_only=True),
    Case("show run", "GET", "/v1/runs/{run}", frozenset({"admin", "auditor"}), org_only=True),
    Case("monthly report", "GET", "/v1/reports/2026-06", frozenset({"admin", "auditor"}),
         org_only=True),
    Case("monthly report as HTML", "GET", "/v1/reports/2026-06?format=html",
         frozenset({"admin", "auditor"}), org_only=True),
    Case("read audit", "GET", "/v1/audit", frozenset({"admin", "auditor"}), other="filtered"),
    Case("verify audit", "GET", "/v1/audit/verify", frozenset({"admin", "auditor"}),
         org_only=True),
    Case("show workspace", "GET", "/v1/workspaces/ws_a",
         frozenset({"admin", "privacy", "auditor"}), other=403),
    Case("set workspace region", "PATCH", "/v1/workspaces/ws_a", frozenset({"admin"}),
         other=403, body=lambda s: {"region": None}),
    Case("show retention periods", "GET", "/v1/workspaces/ws_a/retention",
         frozenset({"admin", "privacy", "auditor"}), other=403),
    Case("choose a retention period", "PUT", "/v1/workspaces/ws_a/retention/events",
         frozenset({"admin", "privacy"}), other=403, body=lambda s: {"keep": "30d"}),
    Case("list an archive", "GET", "/v1/archives/events", frozenset({"admin", "auditor"}),
         org_only=True),
    Case("terminate workspace", "POST", "/v1/workspaces/ws_a/termination",
         frozenset({"admin"}), org_only=True, ok=201),
    Case("impersonate", "POST", "/v1/impersonations", frozenset({"admin"}), org_only=True,
         ok=201, body=lambda s: {"workspace": "ws_a", "role": "auditor", "minutes": 5,
                                 "reason": "support ticket 12"}),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, dict[str, int]]]:
    directory = tmp_path_factory.mktemp("api")
    # events' first rule lets each workspace choose its period (issue 22, item 2)
    choosable = [{"when": {"status": "processed"}, "after": "received_at",
                  "keep": {"default": "90d", "min": "1d", "max": "365d"}},
                 {"keep": "30d", "after": "received_at"}]
    with served(directory, f"sqlite:///{directory / 'app.db'}",
                policy={"datasets__events__retention": choosable,
                        "termination": {"within": "90d", "recover_for": "30d"}}) as s:
        opened = s.call("POST", "/v1/requests", json={
            "kind": "access", "subject": "user", "workspace": "ws_a",
            "identities": {"email": "user1@example.com"}})
        assert opened.status_code == 201, opened.text
        request_id = opened.json()["id"]
        assert s.call("POST", f"/v1/requests/{request_id}/run").status_code == 200
        erasure = completed_erasure(directory / "lethe.yaml", "email=user3@example.com",
                                    "ws_a", directory / "out")
        run = s.call("POST", "/v1/runs", json={"datasets": ["events"]})
        assert run.status_code == 202, run.text
        yield s, {"request": request_id, "erasure": erasure, "run": run.json()["run"]}


def _expected(case: Case, role: str, scope: str) -> int | str:
    if role not in case.roles or (case.org_only and scope != "org"):
        return 403
    if scope == "other" and case.other is not None:
        return case.other
    return case.ok


def _shows_ws_a(s: Served, payload: dict[str, Any], ids: dict[str, int]) -> bool:
    """Whether a list answered to a ws_b key holds anything of ws_a or the organization."""
    if "requests" in payload:
        return any(r["id"] == ids["request"] or r["workspace"] != "ws_b"
                   for r in payload["requests"])
    if "holds" in payload:
        return any(h["scope"] == "workspace:ws_a" for h in payload["holds"])
    ws_b = {f"key:{key}" for (_, scope), key in s.key_ids.items() if scope == "other"}
    return any(e["actor"].split(" ")[0] not in ws_b for e in payload["entries"])


def _wait_for_runs(s: Served) -> None:
    """A triggered run goes on in the background; let it end before the next case."""
    s.app.state.lethe.heavy.acquire(timeout=60)
    s.app.state.lethe.heavy.release()


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_endpoint_allows_exactly_its_roles_and_workspaces(
        api: tuple[Served, dict[str, int]], case: Case, role: str, scope: str) -> None:
    s, ids = api
    _wait_for_runs(s)
    targets = dict(ids)
    if "{hold}" in case.path:  # a fresh ws_a hold each time: releasing uses it up
        placed = s.call("POST", "/v1/holds", json={"workspace": "ws_a", "reason": "matrix"})
        targets["hold"] = placed.json()["id"]
    path = case.path.format(**targets)
    body = case.body(s) if case.body else None
    response = s.call(case.method, path, role, scope, json=body)
    expected = _expected(case, role, scope)
    payload = response.json() if "json" in response.headers.get("content-type", "") else None
    if expected == "filtered":
        assert response.status_code == 200, response.text
        assert not _shows_ws_a(s, payload, ids), (case.name, role)
        return
    assert response.status_code == expected, (case.name, role, scope, response.text)
    if expected in (403, 404):
        assert payload["error"]["code"] == {403: "forbidden", 404: "not_found"}[expected]


def test_every_call_in_the_matrix_was_audited(api: tuple[Served, dict[str, int]]) -> None:
    s, _ = api
    calls = [e for e in s.runtime.audit.entries(action="api.call")]
    denied = [e for e in calls if '"status":403' in e.details]
    assert len(calls) > len(CASES) * len(ROLES) * len(SCOPES)
    assert denied, "denied calls are audited too"
    by_key = {key: role for (role, _), key in s.key_ids.items()}
    for entry in calls:
        key = entry.actor.split(" ")[0].removeprefix("key:")
        assert key in by_key or entry.actor == "anonymous"
        assert entry.source.startswith("api:")


def test_a_workspace_key_lists_only_its_own(api: tuple[Served, dict[str, int]],
                                            tmp_path: Path) -> None:
    s, ids = api
    own = s.call("GET", "/v1/requests", "privacy", "own").json()["requests"]
    other = s.call("GET", "/v1/requests", "privacy", "other").json()["requests"]
    assert ids["request"] in {r["id"] for r in own}
    assert all(r["workspace"] == "ws_a" for r in own)
    assert all(r["workspace"] == "ws_b" for r in other)
    # ws_b's auditor reads ws_b's own calls (some were denied attempts on ws_a's request),
    # never what anyone else did to ws_a's request.
    audit = s.call("GET", "/v1/audit?limit=1000", "auditor", "other").json()["entries"]
    ws_b = {f"key:{key}" for (_, scope), key in s.key_ids.items() if scope == "other"}
    about_ws_a = [e for e in audit if e["target"] == f"request:{ids['request']}"]
    assert audit and all(e["actor"] in ws_b for e in about_ws_a)
    everything = s.call("GET", "/v1/audit?limit=1000", "auditor", "org").json()["entries"]
    assert any(e["target"] == f"request:{ids['request']}" and e["actor"] not in ws_b
               for e in everything)
