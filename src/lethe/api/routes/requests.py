"""Data-subject requests: open, list, show, run, and download their export and certificate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from lethe.api.access import Principal
from lethe.api.context import Caller, Context, RecordId, act
from lethe.api.errors import ApiError
from lethe.api.fields import IdentityValue, Name
from lethe.commands.certificates import certificate_of
from lethe.commands.requests import (
    RequestRecord,
    get_request,
    is_overdue,
    list_requests,
    open_request,
    run_request,
)
from lethe.errors import StoreError
from lethe.requests.certificate import certificate_html, certificate_text

router = APIRouter(prefix="/v1/requests", tags=["requests"])

class OpenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["access", "erasure"]
    subject: Name = Field(description="Subject kind, e.g. user")
    identities: dict[Name, IdentityValue] = Field(min_length=1, max_length=10,
                                                  description="Identity name → value")
    workspace: Name | None = Field(
        default=None, description="Organization keys only: the workspace whose subject this "
        "is (workspace keys always use their own)")


def summary(record: RequestRecord, ctx: Context) -> dict[str, Any]:
    """What the API shows of a request: never its identities, only their fingerprint."""
    data: dict[str, Any] = {
        "id": record.id, "kind": record.kind, "subject": record.subject_kind,
        "status": record.status, "due": record.due_at.isoformat(),
        "received": record.received_at.isoformat(),
        "overdue": is_overdue(ctx.runtime, record),
        "workspace": record.workspace, "fingerprint": record.fingerprint[:12],
        "note": record.note, "result": record.result,
        "completed": record.completed_at.isoformat() if record.completed_at else None}
    if record.export_path:
        data["export"] = f"/v1/requests/{record.id}/export"
    if record.certificate_path or (record.kind == "erasure" and record.status == "completed"):
        data["certificate"] = f"/v1/requests/{record.id}/certificate"
    return data


def visible(ctx: Context, principal: Principal, request_id: int) -> RequestRecord:
    """The request, if this key may see it; another workspace's is "not found"."""
    record = get_request(ctx.runtime, request_id)
    if not principal.sees(record.workspace):
        raise ApiError(404, f"no request with id {request_id}")
    return record


@router.post("", name="requests.open", status_code=201,
             summary="Open a request (due 30 days after receipt)")
def open_one(body: OpenRequest, request: Request, principal: Caller,
             ctx: Context) -> dict[str, Any]:
    act(request, principal, "requests.open", "requests")
    workspace = principal.workspace
    if body.workspace is not None:
        if not principal.org and body.workspace != workspace:
            raise ApiError(403, "this key is confined to its own workspace")
        workspace = body.workspace
    pairs = [f"{name}={value}" for name, value in body.identities.items()]
    record = open_request(ctx.runtime_for(principal), body.kind, body.subject, pairs,
                          workspace=workspace)
    request.state.resource = f"request:{record.id}"
    return {"id": record.id, "status": record.status, "due": record.due_at.isoformat()}


@router.get("", name="requests.list", summary="List requests (a workspace key sees its own)")
def list_all(request: Request, principal: Caller, ctx: Context,
             status: Literal["received", "verified", "in_progress", "completed",
                             "rejected"] | None = None) -> dict[str, Any]:
    act(request, principal, "requests.read", "requests")
    records = list_requests(ctx.runtime, status, workspace=principal.workspace)
    return {"requests": [summary(r, ctx) for r in records]}


@router.get("/{request_id}", name="requests.show", summary="One request's status and results")
def show(request_id: RecordId, request: Request, principal: Caller,
         ctx: Context) -> dict[str, Any]:
    act(request, principal, "requests.read", f"request:{request_id}")
    return summary(visible(ctx, principal, request_id), ctx)


@router.post("/{request_id}/run", name="requests.run",
             summary="Carry out a request (export, or erase and certify)")
def run(request_id: RecordId, request: Request, principal: Caller,
        ctx: Context) -> dict[str, Any]:
    act(request, principal, "requests.run", f"request:{request_id}")
    visible(ctx, principal, request_id)
    with ctx.heavy:
        outcome = run_request(ctx.runtime_for(principal), request_id, ctx.out_dir)
    if outcome.error is not None:  # recorded on the request, which stays open: 503
        raise StoreError(f"request {request_id} stopped: {outcome.error}")
    data = outcome.as_dict()
    data.pop("export", None)  # server paths: clients download through the API
    data.pop("certificate", None)
    return data | {k: v for k, v in summary(outcome.record, ctx).items()
                   if k in ("export", "certificate")}


@router.get("/{request_id}/export", name="requests.export",
            summary="Download an access request's export (zip)",
            response_class=FileResponse)
def export(request_id: RecordId, request: Request, principal: Caller,
           ctx: Context) -> FileResponse:
    act(request, principal, "requests.export", f"request:{request_id}")
    record = visible(ctx, principal, request_id)
    return _file(record.export_path, "no export for this request", "application/zip")


@router.get("/{request_id}/certificate", name="requests.certificate",
            summary="Download an erasure request's signed certificate (JSON or HTML)",
            responses={200: {"content": {"application/json": {}, "text/html": {}}}})
def certificate(request_id: RecordId, request: Request, principal: Caller, ctx: Context,
                format: Literal["json", "html"] = "json") -> Response:
    act(request, principal, "certificates.read", f"request:{request_id}")
    record = visible(ctx, principal, request_id)
    document = certificate_of(ctx.runtime, record.id)
    if document is None:
        raise ApiError(404, "no certificate for this request")
    name = f"request-{record.id}-certificate"
    if format == "html":
        return HTMLResponse(certificate_html(document), headers=_attachment(f"{name}.html"))
    return Response(certificate_text(document), media_type="application/json",
                    headers=_attachment(f"{name}.json"))


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def _file(path: str | None, missing: str, media_type: str) -> FileResponse:
    if not path or not Path(path).is_file():
        raise ApiError(404, missing)
    return FileResponse(path, media_type=media_type, filename=Path(path).name)
