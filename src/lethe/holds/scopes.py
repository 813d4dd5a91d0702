"""Holds as records: parsing a scope, placing a hold (so it binds at once), releasing.
"""

from __future__ import annotations

from dataclasses import dataclass

from lethe.audit.log import AuditLog
from lethe.clock import Clock
from lethe.control.store import ControlStore, Hold
from lethe.errors import UsageError
from lethe.holds.gate import gate_of
from lethe.policy.model import Policy


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
    # Committed under the gate held exclusively: once this returns, every unit of work
    # that commits afterwards read the holds after this one was in them (holds/gate.py).
    with gate_of(control.engine).exclusive():
        hold_id = control.place_hold(scope.kind, scope.value, scope.subject_kind, reason,
                                     clock.now(), audit.actor)
    shown = _fingerprint(audit, scope.subject_kind, scope.value) \
        if scope.kind == "subject" else scope.value
    from lethe.audit.events import HoldPlaced  # (the events load when one is written)

    audit.append(HoldPlaced(hold_id, scope.kind, scope.subject_kind, shown, reason))
    return hold_id


def release_hold(control: ControlStore, audit: AuditLog, clock: Clock, hold_id: int,
                 reason: str | None) -> Hold:
    hold = control.release_hold(hold_id, clock.now(), audit.actor, reason)
    from lethe.audit.events import HoldReleased

    audit.append(HoldReleased(hold_id, reason or ""))
    return hold


def _fingerprint(audit: AuditLog, subject_kind: str | None, key: str) -> str:
    return audit.fingerprint(f"{subject_kind}\x1f{key}")[:16]


def shown_scope(audit: AuditLog, hold: Hold) -> str:
    """A hold's scope with a subject's key replaced by the fingerprint its audit entry
    carries: a report is shared more widely than the control store."""
    if hold.scope_kind != "subject":
        return hold.scope
    return f"subject:{hold.subject_kind}:{_fingerprint(audit, hold.subject_kind, hold.scope_value)}"


def on_workspace(hold: Hold, workspace: str | None) -> bool:
    """Is this a hold on that workspace?"""
    return hold.scope_kind == "workspace" and hold.scope_value == workspace
