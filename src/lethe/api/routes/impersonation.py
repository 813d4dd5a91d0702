"""Admin impersonation: a token acting as a role in a workspace, for at most an hour.

Issued only to an organization admin key (not to another impersonation); audited when
issued, and every call made with it is audited under both keys and marked in its
response (`Lethe-Impersonated-By`).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from lethe.api.context import Caller, Context, act
from lethe.api.errors import ApiError
from lethe.api.fields import Name, Reason
from lethe.commands.keys import impersonate

router = APIRouter(prefix="/v1/impersonations", tags=["impersonation"])


class Impersonate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workspace: Name
    role: Literal["admin", "privacy", "auditor", "service"]
    minutes: int = Field(default=15, ge=1, le=60)
    reason: Reason


@router.post("", name="impersonations.issue", status_code=201,
             summary="Issue a time-limited impersonation token")
def issue(body: Impersonate, request: Request, principal: Caller,
          ctx: Context) -> dict[str, Any]:
    act(request, principal, "impersonate", f"workspace:{body.workspace}")
    if principal.key.impersonator is not None:
        raise ApiError(403, "an impersonation token cannot issue another")
    rt = ctx.runtime_for(principal)
    issued = impersonate(rt, body.role, body.workspace, body.minutes, body.reason,
                         admin=principal.key)
    return {"id": issued.key.id, "token": issued.token, "role": issued.key.role,
            "workspace": issued.key.workspace,
            "expires_at": issued.key.expires_at.isoformat() if issued.key.expires_at
            else None}
