"""Legal holds: place, list, release. A workspace key holds only its own workspace's data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from lethe.api.access import Principal
from lethe.api.context import ApiContext, Caller, Context, RecordId, act
from lethe.api.errors import ApiError
from lethe.api.fields import IdentityValue, Name, Reason
from lethe.commands import holds as hold_commands
from lethe.commands.holds import Hold, Scope

router = APIRouter(prefix="/v1/holds", tags=["holds"])


class PlaceHold(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: IdentityValue | None = Field(
        default=None, description="KIND:KEY — the subject and everything linked")
    workspace: Name | None = None
    dataset: Name | None = Field(default=None, description="Organization keys only")
    reason: Reason = Field(description="Case or ticket")


class ReleaseHold(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason | None = None


def visible_holds(ctx: ApiContext, principal: Principal, *,
                  include_released: bool) -> list[Hold]:
    """A workspace key sees holds on its workspace and those its workspace's keys placed."""
    return hold_commands.list_holds(ctx.runtime, include_released=include_released,
                                    workspace=principal.workspace)


def _confine(ctx: ApiContext, principal: Principal, scope: Scope) -> None:
    workspace = principal.workspace
    if workspace is None:
        return
    if scope.kind == "dataset":
        raise ApiError(403, "a dataset hold spans every workspace: it needs an "
                       "organization key")
    if scope.kind == "workspace" and scope.value != workspace:
        raise ApiError(403, "this key is confined to its own workspace")
    if scope.kind == "subject" and not hold_commands.subject_only_in(ctx.runtime, scope,
                                                                      workspace):
        raise ApiError(404, "no subject with that key in this workspace alone")


@router.post("", name="holds.place", status_code=201,
             summary="Place a hold on a subject, a workspace or a dataset")
def place(body: PlaceHold, request: Request, principal: Caller,
          ctx: Context) -> dict[str, Any]:
    act(request, principal, "holds.place", "holds")
    rt = ctx.runtime_for(principal)
    scope = hold_commands.hold_scope(rt, body.subject, body.workspace, body.dataset)
    _confine(ctx, principal, scope)
    placed = hold_commands.place(rt, scope, body.reason)
    request.state.resource = f"hold:{placed.id}"
    return {"id": placed.id, "lifecycle_withdrawn": placed.lifecycle_withdrawn}


@router.get("", name="holds.list", summary="List holds (active only, unless all=true)")
def list_all(request: Request, principal: Caller, ctx: Context,
             all: bool = False) -> dict[str, Any]:
    act(request, principal, "holds.read", "holds")
    found = visible_holds(ctx, principal, include_released=all)
    return {"holds": [hold_commands.hold_as_dict(h, ctx.runtime.audit) for h in found]}


@router.post("/{hold_id}/release", name="holds.release", summary="Release a hold")
def release(hold_id: RecordId, body: ReleaseHold, request: Request, principal: Caller,
            ctx: Context) -> dict[str, Any]:
    act(request, principal, "holds.release", f"hold:{hold_id}")
    if hold_id not in {h.id for h in visible_holds(ctx, principal, include_released=False)}:
        raise ApiError(404, f"no active hold with id {hold_id}")
    rt = ctx.runtime_for(principal)
    hold = hold_commands.release(rt, hold_id, body.reason)
    return {"id": hold.id, "released": True}
