"""Workspaces: their region preference (SPEC: a region preference per account)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from lethe.api.context import Caller, Context, act
from lethe.api.fields import NO_CONTROLS, Name
from lethe.commands.periods import retention_periods, set_retention_period
from lethe.commands.requests import open_termination
from lethe.commands.residency import set_workspace_region, workspace_region

router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"])
WorkspaceId = Path(min_length=1, max_length=200, pattern=NO_CONTROLS)


class PeriodChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: str | None = Field(max_length=20, description="A duration within the dataset's "
                             "bounds (`30d`, `1y`), or null for the default")


class RegionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: Name | None = Field(description="One of the policy's regions, or null for none")


@router.get("/{workspace_id}", name="workspaces.show", summary="A workspace's region preference")
def show(request: Request, principal: Caller, ctx: Context,
         workspace_id: str = WorkspaceId) -> dict[str, Any]:
    act(request, principal, "workspaces.read", f"workspace:{workspace_id}")
    principal.require_workspace(workspace_id)
    found = workspace_region(ctx.runtime, workspace_id)
    return {"id": workspace_id, "region": found.region if found else None,
            "updated_at": found.updated_at.isoformat() if found else None}


@router.patch("/{workspace_id}", name="workspaces.update",
              summary="Set or clear a workspace's region")
def update(body: RegionChange, request: Request, principal: Caller, ctx: Context,
           workspace_id: str = WorkspaceId) -> dict[str, Any]:
    act(request, principal, "workspaces.update", f"workspace:{workspace_id}")
    principal.require_workspace(workspace_id)
    changed = set_workspace_region(ctx.runtime_for(principal), workspace_id, body.region)
    return {"id": workspace_id, "region": changed.region,
            "updated_at": changed.updated_at.isoformat()}


@router.get("/{workspace_id}/retention", name="workspaces.retention.show",
            summary="The retention periods a workspace chose, with their bounds")
def show_retention(request: Request, principal: Caller, ctx: Context,
                   workspace_id: str = WorkspaceId) -> dict[str, Any]:
    act(request, principal, "workspaces.read", f"workspace:{workspace_id}")
    principal.require_workspace(workspace_id)
    return {"id": workspace_id,
            "datasets": [p.as_dict() for p in retention_periods(ctx.runtime, workspace_id)]}


@router.put("/{workspace_id}/retention/{dataset}", name="workspaces.retention",
            summary="Choose a workspace's retention period for a dataset, within its bounds")
def set_retention(body: PeriodChange, request: Request, principal: Caller, ctx: Context,
                  workspace_id: str = WorkspaceId,
                  dataset: str = Path(min_length=1, max_length=200, pattern=NO_CONTROLS)
                  ) -> dict[str, Any]:
    act(request, principal, "workspaces.retention", f"workspace:{workspace_id}")
    principal.require_workspace(workspace_id)
    chosen = set_retention_period(ctx.runtime_for(principal), workspace_id, dataset,
                                  body.keep)
    return {"id": workspace_id, **chosen.as_dict()}


@router.post("/{workspace_id}/termination", name="workspaces.terminate", status_code=201,
             summary="Terminate a workspace: erase it from every store (organization admins)")
def terminate(request: Request, principal: Caller, ctx: Context,
              workspace_id: str = WorkspaceId) -> dict[str, Any]:
    """Opens the workspace's termination request (the open one if there is one): due
    `termination.within` after now; run it with `POST /v1/requests/{id}/run` once its
    `recover_for` has passed; before that, `lethe request reject ID` cancels it."""
    act(request, principal, "workspaces.terminate", f"workspace:{workspace_id}")
    record = open_termination(ctx.runtime_for(principal), workspace_id)
    request.state.resource = f"request:{record.id}"
    return {"id": record.id, "workspace": workspace_id, "status": record.status,
            "due": record.due_at.isoformat()}
