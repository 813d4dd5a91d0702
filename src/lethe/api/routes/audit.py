"""The audit log, read-only: pages of entries, and the chain's verification.

A workspace key reads the entries its workspace's keys wrote and those about its
requests, holds and the workspace itself; the chain's verification is organization-wide.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from lethe.api.access import Principal, actor_of
from lethe.api.context import ApiContext, Caller, Context, act
from lethe.api.errors import ApiError
from lethe.api.fields import NO_CONTROLS
from lethe.api.routes.holds import visible_holds
from lethe.requests.records import requests_of

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _workspace_view(ctx: ApiContext, principal: Principal) -> tuple[list[str], list[str]]:
    workspace = principal.workspace
    actors = [actor_of(k) for k in ctx.keys.list(include_revoked=True)
              if k.workspace == workspace]
    targets = [f"workspace:{workspace}"]
    targets += [f"request:{r.id}" for r in requests_of(ctx.runtime).list(workspace=workspace)]
    targets += [f"hold:{h.id}" for h in visible_holds(ctx, principal, include_released=True)]
    return actors, targets


@router.get("", name="audit.entries", summary="Audit entries in order, a page at a time")
def entries(request: Request, principal: Caller, ctx: Context,
            after: int = Query(0, ge=0, le=2 ** 63 - 1,
                              description="Entries after this sequence number"),
            limit: int = Query(100, ge=1, le=1000),
            action: str | None = Query(None, max_length=100, pattern=NO_CONTROLS,
                                       description="e.g. request or hold.placed"),
            target: str | None = Query(None, max_length=400, pattern=NO_CONTROLS)
            ) -> dict[str, Any]:
    act(request, principal, "audit.read", "audit")
    view = None if principal.org else _workspace_view(ctx, principal)
    found = ctx.runtime.audit.entries(after=after, limit=limit, action=action, target=target,
                                      visible=view)
    return {"entries": [e.as_dict() for e in found],
            "next": found[-1].seq if len(found) == limit else None}


@router.get("/verify", name="audit.verify",
            summary="Verify the whole hash chain and its signed checkpoints")
def verify(request: Request, principal: Caller, ctx: Context) -> dict[str, Any]:
    act(request, principal, "audit.read", "audit")
    if not principal.org:
        raise ApiError(403, "verifying the whole chain needs an organization key")
    return ctx.runtime.audit.verify().as_dict()
