"""Residency: authorised transfers of a workspace's data to another region, and each
workspace's region preference."""

from __future__ import annotations

from lethe.audit.events import WorkspaceRegionSet
from lethe.control.transfers import Transfer, Transfers
from lethe.control.workspaces import WorkspaceRegion, WorkspaceRegions
from lethe.errors import UsageError
from lethe.governance.residency import record_transfer as record
from lethe.governance.residency import revoke_transfer as revoke
from lethe.runtime import Runtime


def record_transfer(rt: Runtime, *, workspace: str, dataset: str, to_region: str,
                    reason: str, until: str | None = None) -> Transfer:
    """Authorise a workspace's dataset to be held in `to_region` (until the given day
    or instant, or open-ended), audited."""
    return record(Transfers(rt.control.engine), rt.audit, rt.clock, rt.policy,
                  workspace=workspace, dataset=dataset, to_region=to_region, reason=reason,
                  until=until)


def list_transfers(rt: Runtime, *, include_revoked: bool = False) -> list[Transfer]:
    """Recorded transfers, revoked ones only when asked."""
    return Transfers(rt.control.engine).all(include_revoked=include_revoked)


def revoke_transfer(rt: Runtime, transfer_id: int) -> Transfer:
    """Withdraw an authorisation, audited; `check` reports the data again."""
    return revoke(Transfers(rt.control.engine), rt.audit, rt.clock, transfer_id)


def workspace_region(rt: Runtime, workspace: str) -> WorkspaceRegion | None:
    """A workspace's region preference; None when it never set one."""
    return WorkspaceRegions(rt.control.engine).get(workspace)


def set_workspace_region(rt: Runtime, workspace: str, region: str | None) -> WorkspaceRegion:
    """Set (or clear, with None) a workspace's region preference, audited; a region the
    policy does not declare is a usage error."""
    regions = rt.policy.regions
    if region is not None and region not in regions:
        allowed = ", ".join(regions) if regions else "none are declared"
        raise UsageError(f"region must be one of the policy's regions ({allowed}) or null")
    changed = WorkspaceRegions(rt.control.engine).set(workspace, region, rt.audit.actor)
    rt.audit.append(WorkspaceRegionSet(workspace, region))
    return changed


__all__ = ["Transfer", "WorkspaceRegion", "list_transfers", "record_transfer",
           "revoke_transfer", "set_workspace_region", "workspace_region"]
