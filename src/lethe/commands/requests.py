"""Data-subject requests: open, list, show, run and reject.

The CLI (`lethe request ...`) and the API (`/v1/requests`) both come here; how a
request is shown differs between them, which requests exist and what running one
does does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lethe.control.requests import RequestRecord
from lethe.defaults import BATCH_SIZE, ERASURE_GROUP_SIZE
from lethe.requests import service, termination
from lethe.requests.records import RequestOutcome, requests_of
from lethe.runtime import Runtime

FINISHED = ("completed", "rejected")


def open_request(rt: Runtime, kind: str, subject_kind: str, identities: Sequence[str], *,
             workspace: str | None = None) -> RequestRecord:
    """Open a request for the subject the `NAME=VALUE` identities name; a request
    already open for that subject is returned instead of a second one."""
    return service.open_request(rt, kind, subject_kind, list(identities),
                                workspace=workspace)


def open_termination(rt: Runtime, workspace: str) -> RequestRecord:
    """Open the termination of a workspace: every store, within `termination.within`."""
    return termination.open_termination(rt, workspace)


def open_requests_from_file(rt: Runtime, kind: str, subject_kind: str,
                   path: Path) -> list[RequestRecord]:
    """One request per row of a CSV file whose header names the identities."""
    return service.open_bulk(rt, kind, subject_kind, path)


def list_requests(rt: Runtime, status: str | None = None, *,
                  workspace: str | None = None) -> list[RequestRecord]:
    """Requests in id order; `workspace` keeps only those that workspace opened."""
    return requests_of(rt).list(status, workspace=workspace)


def get_request(rt: Runtime, request_id: int) -> RequestRecord:
    """One request; `NotFound` if there is none with that id."""
    return requests_of(rt).get(request_id)


def is_overdue(rt: Runtime, record: RequestRecord) -> bool:
    """Still open past its due date, by the runtime's clock."""
    return service.overdue(record, rt.clock.now())


def run_request(rt: Runtime, request_id: int, out_dir: Path,
                batch_size: int = BATCH_SIZE) -> RequestOutcome:
    """Carry out one request: an access export, or an erasure step and its certificate
    (kept in the control store and written to `out_dir`)."""
    return service.run_request(rt, request_id, out_dir, batch_size)


def run_open_requests(rt: Runtime, out_dir: Path, batch_size: int = BATCH_SIZE,
                      group_size: int = ERASURE_GROUP_SIZE, *,
                      certificate_files: bool = False) -> list[RequestOutcome]:
    """Run every request not yet completed or rejected; erasures go through in groups,
    and their certificates go to files only with `certificate_files` — then also those
    of completed erasures whose files are missing (a run killed after it completed
    them, before it wrote their files: they are written once the completion commits)."""
    records = requests_of(rt).list()
    if certificate_files:
        service.write_missing_certificates(rt, [r for r in records if r.status == "completed"])
    ids = [r.id for r in records if r.status not in FINISHED]
    return service.run_many(rt, ids, out_dir, batch_size, group_size,
                    certificate_files=certificate_files)


def reject_request(rt: Runtime, request_id: int, reason: str) -> RequestRecord:
    """Reject a request, forgetting its identities."""
    return service.reject(rt, request_id, reason)


__all__ = ["RequestOutcome", "RequestRecord", "get_request", "is_overdue",
           "list_requests", "open_request", "open_requests_from_file", "reject_request",
           "run_open_requests", "run_request"]
