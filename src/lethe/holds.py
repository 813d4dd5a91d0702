"""Legal holds: placing, releasing, and the condition that keeps held rows untouched.

A hold reaches a row three ways: directly (its dataset, its workspace column, or a
subject identity), downward (the row belongs to a held row through belongs_to), and
upward (deleting the row would cascade into a held row, so it must stay too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lethe.audit.events import HoldPlaced, HoldReleased
from lethe.audit.log import AuditLog
from lethe.clock import Clock
from lethe.control.store import ControlStore, Hold
from lethe.errors import UsageError
from lethe.policy.graph import Graph, Link
from lethe.policy.model import Policy
from lethe.stores.base import (
    FALSE,
    TRUE,
    Condition,
    Eq,
    Exists,
    In,
    any_of,
)

CASCADING = ("delete", "anonymize")


@dataclass(frozen=True)
class Scope:
    kind: str  # subject | workspace | dataset
    value: str
    subject_kind: str | None = None


def parse_scope(policy: Policy, subject: str | None, workspace: str | None,
                dataset: str | None) -> Scope:
    given = [x for x in (subject, workspace, dataset) if x is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --subject KIND:KEY, --workspace ID, --dataset NAME",
                         path="hold")
    if subject is not None:
        kind, sep, key = subject.partition(":")
        if not sep or not key:
            raise UsageError("expected KIND:KEY", path="--subject")
        if kind not in policy.subjects:
            raise UsageError(f"unknown subject kind {kind!r}", path="--subject")
        return Scope("subject", key, kind)
    if workspace is not None:
        if not workspace.strip():
            raise UsageError("workspace id is empty", path="--workspace")
        return Scope("workspace", workspace)
    assert dataset is not None
    if dataset not in policy.datasets:
        raise UsageError(f"unknown dataset {dataset!r}", path="--dataset")
    return Scope("dataset", dataset)


def place_hold(control: ControlStore, audit: AuditLog, clock: Clock, scope: Scope,
               reason: str) -> int:
    if not reason.strip():
        raise UsageError("a hold needs a reason", path="--reason")
    hold_id = control.place_hold(scope.kind, scope.value, scope.subject_kind, reason,
                                 clock.now(), audit.actor)
    shown = audit.fingerprint(f"{scope.subject_kind}\x1f{scope.value}")[:16] \
        if scope.kind == "subject" else scope.value
    audit.append(HoldPlaced(hold_id, scope.kind, scope.subject_kind, shown, reason))
    return hold_id


def release_hold(control: ControlStore, audit: AuditLog, clock: Clock, hold_id: int,
                 reason: str | None) -> Hold:
    hold = control.release_hold(hold_id, clock.now(), audit.actor, reason)
    audit.append(HoldReleased(hold_id, reason or ""))
    return hold


@dataclass(frozen=True)
class HoldScopes:
    """Holds compiled into the conditions each dataset needs."""

    policy: Policy
    graph: Graph
    keys: Mapping[str, str]
    holds: Sequence[Hold]

    def direct(self, dataset: str) -> Condition:
        ds = self.policy.datasets[dataset]
        parts: list[Condition] = []
        for hold in self.holds:
            if hold.scope_kind == "dataset" and hold.scope_value == dataset:
                return TRUE
        workspaces = tuple(h.scope_value for h in self.holds if h.scope_kind == "workspace")
        if workspaces and ds.workspace:
            parts.append(In(ds.workspace, workspaces))
        for hold in self.holds:
            if hold.scope_kind != "subject" or hold.subject_kind is None:
                continue
            subject = self.policy.subjects.get(hold.subject_kind)
            if subject is not None and subject.dataset == dataset:
                parts += [Eq(identity, hold.scope_value) for identity in subject.identities]
        return any_of(*parts)

    def down(self, dataset: str, skip: Link | None = None) -> Condition:
        """Held directly or through any parent (except along `skip`)."""
        parts = [self.direct(dataset)]
        for link in self.graph.parents(dataset):
            if link == skip:
                continue
            parent = self.policy.datasets[link.parent]
            above = self.down(link.parent)
            if above != FALSE:
                parts.append(Exists(parent.table or "", self.keys[link.parent], link.column,
                                    above, parent.store))
        return any_of(*parts)

    def up(self, dataset: str) -> Condition:
        """Deleting this row would cascade into a held row."""
        parts: list[Condition] = []
        for link in self.graph.children(dataset):
            child = self.policy.datasets[link.child]
            if child.erasure not in CASCADING:
                continue
            below = self.down(link.child, skip=link)
            if child.erasure == "delete":
                below = any_of(below, self.up(link.child))
            if below != FALSE:
                parts.append(Exists(child.table or "", link.column, self.keys[dataset], below,
                                    child.store))
        return any_of(*parts)

    def held(self, dataset: str, *, cascading: bool) -> Condition:
        """Rows of `dataset` that an action must skip; `cascading` when it deletes."""
        if not self.holds:
            return FALSE
        return any_of(self.down(dataset), self.up(dataset)) if cascading else self.down(dataset)
