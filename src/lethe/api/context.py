"""What the API holds for its lifetime, and what each call gets from it.

One Runtime (policy, live stores, control store) is opened at start and shared; each
call works on a view of it whose audit log writes in the calling key's name.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lethe.api.access import Principal
from lethe.api.errors import ApiError
from lethe.api.limits import RateLimiter, retry_after
from lethe.commands.audit import acting_as
from lethe.commands.keys import Authenticator, authenticator
from lethe.runtime import Runtime


@dataclass
class ApiContext:
    runtime: Runtime
    out_dir: Path
    limiter: RateLimiter
    authenticator: Authenticator = field(init=False)
    # Request runs and sweeps change data: one at a time in this process.
    heavy: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.authenticator = authenticator(self.runtime)

    def runtime_for(self, principal: Principal) -> Runtime:
        """The runtime whose audit log writes in the calling key's name."""
        return acting_as(self.runtime, principal.actor, f"api:{principal.ip}")


bearer = HTTPBearer(auto_error=False, description="An API key: `lethe_<id>_<secret>`.")


def context_of(request: Request) -> ApiContext:
    ctx = request.app.state.lethe
    assert isinstance(ctx, ApiContext)
    return ctx


def authenticated(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None,
                                         Depends(bearer)]) -> Principal:
    """The calling key, checked and rate-limited; remembered for the call's audit entry."""
    ctx = context_of(request)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "an API key is required (Authorization: Bearer …)",
                       headers={"WWW-Authenticate": "Bearer"})
    key = ctx.authenticator.key_for(credentials.credentials)
    if key is None:
        raise ApiError(401, "unknown, revoked or expired API key",
                       headers={"WWW-Authenticate": "Bearer"})
    principal = Principal(key, request.client.host if request.client else "-")
    request.state.principal = principal
    wait = ctx.limiter.wait(key.id)
    if wait > 0:
        raise ApiError(429, "rate limit exceeded for this key", headers=retry_after(wait))
    return principal


Caller = Annotated[Principal, Depends(authenticated)]
# Record ids are integers the control store can hold (PostgreSQL `integer`).
MAX_ID = 2 ** 31 - 1
RecordId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
Context = Annotated[ApiContext, Depends(context_of)]


def act(request: Request, principal: Principal, action: str, resource: str) -> None:
    """Check the caller may do `action`, and name what the call's audit entry is about."""
    request.state.action = action
    request.state.resource = resource
    principal.require(action)
