"""A served lethe API over the test app schema, with a key per role and scope."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from lethe.api.app import create_app
from lethe.clock import Clock
from lethe.commands.keys import ORG, create_api_key
from lethe.policy.load import load_policy
from lethe.requests.service import open_request, run_request
from lethe.runtime import Runtime
from tests.fixtures import NOW, build_app, write_policy

SCOPES = ("org", "own", "other")  # own: ws_a's keys on ws_a's data; other: ws_b's keys
WORKSPACE = {"org": ORG, "own": "ws_a", "other": "ws_b"}


@dataclass
class Served:
    directory: Path
    runtime: Runtime
    app: FastAPI
    client: TestClient
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)  # (role, scope)
    key_ids: dict[tuple[str, str], str] = field(default_factory=dict)

    def headers(self, role: str = "admin", scope: str = "org") -> dict[str, str]:
        """A key per (role, scope), made when first used (scrypt makes each cost ~0.15 s)."""
        if (role, scope) not in self.tokens:
            issued = create_api_key(self.runtime, role, WORKSPACE[scope])
            self.tokens[role, scope] = issued.token
            self.key_ids[role, scope] = issued.key.id
        return {"Authorization": f"Bearer {self.tokens[role, scope]}"}

    def call(self, method: str, path: str, role: str = "admin", scope: str = "org",
             **kwargs: Any) -> Any:
        return self.client.request(method, path, headers=self.headers(role, scope), **kwargs)

    def new_key(self, role: str, workspace: str) -> str:
        issued = create_api_key(self.runtime, role, workspace)
        return issued.token


def completed_erasure(policy_path: Path, identity: str, workspace: str | None,
                      out: Path) -> int:
    """An erasure request taken to its certificate (soft delete, then 31 days later)."""
    policy = load_policy(policy_path)
    first = Runtime.open(policy, Clock(NOW))
    try:
        record = open_request(first, "erasure", "user", [identity], workspace=workspace)
        run_request(first, record.id, out)
    finally:
        first.close()
    later = Runtime.open(policy, Clock(NOW + timedelta(days=31)))
    try:
        outcome = run_request(later, record.id, out)
    finally:
        later.close()
    assert outcome.record.status == "completed", outcome.as_dict()
    return record.id


@contextlib.contextmanager
def served(directory: Path, url: str, *, control: str | None = None,
           policy: dict[str, Any] | None = None, **options: Any) -> Iterator[Served]:
    """The app schema at `url`, its policy (with `policy`'s changes, write_policy's
    `a__b` paths), an app over it and a key per role and scope."""
    build_app(url).dispose()
    changes: dict[str, Any] = {"control": control} if control else {}
    changes.update(policy or {})
    policy_path = write_policy(directory, url, **changes)
    rt = Runtime.open(load_policy(policy_path), Clock(NOW))
    try:
        app = create_app(rt, out_dir=directory / "out", **options)
        with TestClient(app) as client:
            yield Served(directory, rt, app, client)
    finally:
        rt.close()
