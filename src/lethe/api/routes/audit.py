"""The audit log, read-only: pages of entries, and the chain's verification.

A workspace key reads the entries its workspace's keys wrote and those about its
requests, holds and the workspace itself; the chain's verification is organization-wide.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from lethe.api.context import Caller, Context, act
from lethe.api.errors import ApiError
from lethe.api.fields import NO_CONTROLS
from lethe.commands.audit import entries as audit_entries
from lethe.commands.audit import verify_chain

router = APIRouter(prefix="/v1/audit", tags=["audit"])


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
    found = audit_entries(ctx.runtime, after=after, limit=limit, action=action,
                          target=target, workspace=principal.workspace)
    return {"entries": [e.as_dict() for e in found],
            "next": found[-1].seq if len(found) == limit else None}


@router.get("/verify", name="audit.verify",
            summary="Verify the whole hash chain and its signed checkpoints")
def verify(request: Request, principal: Caller, ctx: Context) -> dict[str, Any]:
    act(request, principal, "audit.read", "audit")
    if not principal.org:
        raise ApiError(403, "verifying the whole chain needs an organization key")
    return verify_chain(ctx.runtime).as_dict()
