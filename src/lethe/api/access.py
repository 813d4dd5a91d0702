"""Who may do what: roles, actions and workspaces.

Every endpoint names one action. A role either has it or not; some actions exist only
for organization keys (they span every workspace: runs, reports, impersonation). A
workspace key acts only inside its workspace: other workspaces' records are answered
as not found, so their existence does not leak either.
"""

from __future__ import annotations

from dataclasses import dataclass

from lethe.api.errors import ApiError
from lethe.commands.keys import ORG, ApiKey, actor_of

ALLOWED: dict[str, frozenset[str]] = {
    "requests.open": frozenset({"admin", "privacy", "service"}),
    "requests.read": frozenset({"admin", "privacy"}),
    "requests.run": frozenset({"admin", "privacy"}),
    "requests.export": frozenset({"admin", "privacy"}),
    "certificates.read": frozenset({"admin", "privacy", "auditor"}),
    "holds.read": frozenset({"admin", "privacy"}),
    "holds.place": frozenset({"admin", "privacy"}),
    "holds.release": frozenset({"admin", "privacy"}),
    "runs.trigger": frozenset({"admin"}),
    "runs.read": frozenset({"admin", "auditor"}),
    "reports.read": frozenset({"admin", "auditor"}),
    "audit.read": frozenset({"admin", "auditor"}),
    "archives.read": frozenset({"admin", "auditor"}),
    "workspaces.read": frozenset({"admin", "privacy", "auditor"}),
    "workspaces.update": frozenset({"admin"}),
    "workspaces.retention": frozenset({"admin", "privacy"}),
    "workspaces.terminate": frozenset({"admin"}),
    "impersonate": frozenset({"admin"}),
}
ORG_ONLY = frozenset({"runs.trigger", "runs.read", "reports.read", "impersonate",
                      "workspaces.terminate", "archives.read"})


@dataclass(frozen=True)
class Principal:
    key: ApiKey
    ip: str

    @property
    def org(self) -> bool:
        return self.key.workspace == ORG

    @property
    def workspace(self) -> str | None:
        """The one workspace this key is confined to; None for organization keys."""
        return None if self.org else self.key.workspace

    @property
    def actor(self) -> str:
        return actor_of(self.key)

    def may(self, action: str) -> bool:
        return self.key.role in ALLOWED[action] and (self.org or action not in ORG_ONLY)

    def require(self, action: str) -> None:
        if action not in ALLOWED:
            raise KeyError(action)  # a typo in an endpoint: a bug, not a client error
        if self.key.role not in ALLOWED[action]:
            raise ApiError(403, f"role {self.key.role!r} may not {action}")
        if not self.org and action in ORG_ONLY:
            raise ApiError(403, f"{action} needs an organization key")

    def sees(self, workspace: str | None) -> bool:
        """Whether a record belonging to `workspace` (None: the organization) is visible."""
        return self.org or workspace == self.key.workspace

    def require_workspace(self, workspace: str) -> None:
        if not self.sees(workspace):
            raise ApiError(403, "this key is confined to its own workspace")
