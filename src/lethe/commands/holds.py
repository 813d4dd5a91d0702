"""Legal holds: place, list and release.

Placing a hold also withdraws any bucket lifecycle rule the hold now reaches, so a
bucket's own expiry cannot delete what is held; both edges get that from `place`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lethe.audit.log import AuditLog
from lethe.commands.keys import workspace_actors
from lethe.control.store import Hold
from lethe.engine.lifecycle import withdraw_held
from lethe.errors import UsageError
from lethe.holds import Scope, on_workspace, parse_scope, place_hold, release_hold, shown_scope
from lethe.requests.discovery import identity_types, subject_confined
from lethe.runtime import Runtime
from lethe.stores.sql.values import not_canonical


@dataclass(frozen=True)
class PlacedHold:
    id: int
    lifecycle_withdrawn: list[str]  # buckets whose lifecycle rules the hold withdrew


def hold_scope(rt: Runtime, subject: str | None, workspace: str | None,
               dataset: str | None) -> Scope:
    """What a hold would name: exactly one of a `KIND:KEY` subject, a workspace or a
    dataset, checked against the policy. A subject's KEY matches any of its identities
    exactly, so it must be a canonical value of at least one of them (`0042` reaches
    no integer id; ` a@x` is its own string)."""
    scope = parse_scope(rt.policy, subject, workspace, dataset)
    if scope.kind == "subject" and scope.subject_kind is not None:
        types = identity_types(rt, scope.subject_kind)
        reasons = [not_canonical(t, scope.value) for t in types.values()]
        if all(reasons):
            raise UsageError(f"the subject key is not a value of any identity of "
                             f"{scope.subject_kind!r} ({', '.join(types)}): {reasons[-1]}",
                             path="--subject")
    return scope


def subject_only_in(rt: Runtime, scope: Scope, workspace: str) -> bool:
    """Whether the subject rows a subject scope reaches exist and all belong to
    `workspace` (a workspace may hold only its own subjects)."""
    return subject_confined(rt, scope.subject_kind or "", scope.value, workspace)


def place(rt: Runtime, scope: Scope, reason: str) -> PlacedHold:
    """Place a hold (audited; binding before this returns), then withdraw the bucket
    lifecycle rules it reaches."""
    hold_id = place_hold(rt.control, rt.audit, rt.clock, scope, reason)
    return PlacedHold(hold_id, withdraw_held(rt))


def list_holds(rt: Runtime, *, include_released: bool = False,
               workspace: str | None = None) -> list[Hold]:
    """Holds, active only unless `include_released`. With a `workspace`: those on that
    workspace and those its keys placed; without one: all of them."""
    found = rt.control.holds(include_released=include_released)
    if workspace is None:
        return found
    ours = set(workspace_actors(rt, workspace))
    return [h for h in found if on_workspace(h, workspace) or h.placed_by in ours]


def release(rt: Runtime, hold_id: int, reason: str | None = None) -> Hold:
    """Release a hold (audited); its rows are subject to retention again."""
    return release_hold(rt.control, rt.audit, rt.clock, hold_id, reason)


def hold_as_dict(hold: Hold, audit: AuditLog) -> dict[str, Any]:
    """A hold as both edges show it: a subject's key as the fingerprint its audit entry
    carries, never in clear (a listing is pasted into tickets and chats)."""
    return {"id": hold.id, "scope": shown_scope(audit, hold), "reason": hold.reason,
            "placed_at": hold.placed_at.isoformat(), "placed_by": hold.placed_by,
            "released_at": hold.released_at.isoformat() if hold.released_at else None}


__all__ = ["Hold", "PlacedHold", "Scope", "hold_as_dict", "hold_scope", "list_holds",
           "place", "release", "subject_only_in"]
