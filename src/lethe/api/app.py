"""The FastAPI application: routes, error handling, limits, and one audit entry per call."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from lethe import __doc__ as about
from lethe.api.access import Principal
from lethe.api.context import ApiContext
from lethe.api.errors import error_response, install_error_handlers
from lethe.api.limits import BodyLimit, RateLimiter
from lethe.api.routes import (
    archives,
    audit,
    holds,
    impersonation,
    reports,
    requests,
    runs,
    workspaces,
)
from lethe.audit.events import ApiCall
from lethe.audit.log import AuditLog
from lethe.commands.audit import acting_as, record
from lethe.defaults import API_MAX_BODY, API_PER_MINUTE
from lethe.errors import LetheError
from lethe.runtime import Runtime

VERSION = "1"
IMPERSONATION_HEADER = "Lethe-Impersonated-By"


def create_app(runtime: Runtime, *, out_dir: Path = Path("lethe-requests"),
               per_minute: int = API_PER_MINUTE,
               max_body: int = API_MAX_BODY) -> FastAPI:
    """The API over an open Runtime (the caller closes it when the app is done)."""
    app = FastAPI(title="lethe", version=VERSION, description=(about or "").strip(),
                  openapi_url="/v1/openapi.json", docs_url="/v1/docs", redoc_url=None)
    app.state.lethe = ApiContext(runtime, out_dir, RateLimiter(per_minute))
    install_error_handlers(app)
    for module in (requests, holds, runs, reports, audit, workspaces, archives,
                   impersonation):
        app.include_router(module.router)
    app.get("/v1/health", tags=["meta"], summary="Liveness: no key needed, no data")(_health)
    app.middleware("http")(_audited)
    app.add_middleware(BodyLimit, max_bytes=max_body)
    return app


# What an audit target may show as it is: an id, a slug, a month. Anything else a caller
# put in a path (an email typed where a workspace id goes) is fingerprinted.
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def audited_resource(resource: str, audit: AuditLog) -> str:
    """`kind:value` as the audit entry names it: the value kept when it has the shape of
    an id, else `kind:fp:<fingerprint>`; the entry can never be edited."""
    kind, sep, value = resource.partition(":")
    if not sep or _PLAIN_ID.fullmatch(value):
        return resource
    return f"{kind}:fp:{audit.fingerprint(value)[:16]}"


def _health() -> dict[str, Any]:
    return {"ok": True}


async def _audited(request: Request,
                   call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Every call is an audit entry: key, IP, action, resource, status. Never a body,
    a query string or a header value (they may hold personal data or secrets)."""
    response = await call_next(request)
    if request.url.path == "/v1/health":
        return response
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None and principal.key.impersonator:
        response.headers[IMPERSONATION_HEADER] = f"key:{principal.key.impersonator}"
    ctx: ApiContext = request.app.state.lethe
    route = request.scope.get("route")
    resource = getattr(request.state, "resource", None) or \
        (getattr(route, "path", None) or "unknown-route")
    call = ApiCall(
        key=principal.key.id if principal else "-",
        workspace=principal.key.workspace if principal else "-",
        role=principal.key.role if principal else "-",
        impersonator=principal.key.impersonator if principal else None,
        ip=request.client.host if request.client else "-",
        method=request.method,
        action=str(getattr(request.state, "action", None) or getattr(route, "name", None)
                   or "unknown"),
        resource=audited_resource(resource, ctx.runtime.audit), status=response.status_code)
    caller = acting_as(ctx.runtime, principal.actor if principal else "anonymous",
                       f"api:{call.ip}")
    try:
        await run_in_threadpool(record, caller, call)
    except LetheError:
        # An API that cannot record its calls must not answer them.
        return error_response(503, "store_unavailable", "the audit log is unavailable")
    return response
