"""A request's life in the control store: transitions, and what a run reports.

`received → verified → in_progress → completed | rejected`; every step is an audit
entry. Transitions come singly or for a whole batch of requests at once (one update
transaction and one audit append either way), so bulk erasure does not pay a commit
per request per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from lethe.audit.events import RequestTransition
from lethe.control.requests import RequestRecord, RequestStore, updated
from lethe.control.tx import joined
from lethe.errors import LetheError
from lethe.runtime import Runtime

TRANSITIONS = {"received": {"verified", "rejected"}, "verified": {"in_progress", "rejected"},
               "in_progress": {"completed", "rejected"}}
COUNT_KEYS = ("rows", "erased", "retained", "held")


def requests_of(rt: Runtime) -> RequestStore:
    return RequestStore(rt.control.engine)


def _checked(record: RequestRecord, statuses: Sequence[str]) -> str:
    current = record.status
    for status in statuses:
        if status not in TRANSITIONS.get(current, set()):
            raise LetheError(f"request {record.id} cannot go from {current} to {status}",
                             path="request")
        current = status
    return current


def transition_many(rt: Runtime, moves: Sequence[tuple[RequestRecord, Sequence[str],
                                                        dict[str, Any]]],
                    note: str | None = None, *,
                    conn: Connection | None = None) -> list[RequestRecord]:
    """Move each request through its statuses in order, setting its values, and audit
    it: one transaction for the lot (`conn`'s when given), so a status never changes
    without its entry. Nothing moves if any move is invalid."""
    changes = []
    now = rt.clock.now()
    for record, statuses, values in moves:
        changes.append((record.id, {"status": _checked(record, statuses), "updated_at": now,
                                    "note": note, **values}))
    if not changes:
        return []
    store = requests_of(rt)
    with joined(rt.control.engine, conn, "moving requests") as conn:
        store.update_each(changes, conn=conn)
        rt.audit.append_many([RequestTransition(record.id, record.kind, record.subject_kind,
                                                record.fingerprint, status, note)
                              for record, statuses, _ in moves for status in statuses],
                             conn=conn)
    return [updated(record, values)
            for (record, _, _), (_, values) in zip(moves, changes, strict=True)]


def transition(rt: Runtime, record: RequestRecord, *statuses: str,
               note: str | None = None, **values: Any) -> RequestRecord:
    """Move one request through `statuses` in order."""
    return transition_many(rt, [(record, statuses, values)], note)[0]


@dataclass
class DatasetReport:
    rows: int = 0
    erased: int = 0
    retained: int = 0
    held: int = 0
    action: str = "delete"
    legal_basis: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "erased": self.erased, "retained": self.retained,
                "held": self.held}


@dataclass
class RequestOutcome:
    record: RequestRecord
    datasets: dict[str, DatasetReport] = field(default_factory=dict)
    export: Path | None = None
    certificate: Path | None = None  # the file, when one was written
    certified: bool = False  # a signed certificate is in the control store
    error: str | None = None  # the run stopped on a store error (the request stays open)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.record.id, "status": self.record.status,
                                "datasets": {n: r.as_dict() for n, r in self.datasets.items()}}
        if self.record.note:
            data["note"] = self.record.note
        if self.export is not None:
            data["export"] = str(self.export)
        if self.certificate is not None:
            data["certificate"] = str(self.certificate)
        if self.certified:
            data["certified"] = True
        if self.error is not None:
            data["error"] = self.error
        return data

    def result(self) -> dict[str, Any]:
        """What the request record keeps of the run."""
        return {"datasets": {n: r.as_dict() for n, r in self.datasets.items()}}


def finished_outcome(record: RequestRecord) -> RequestOutcome:
    """A completed or rejected request, as its record remembers it."""
    stored = (record.result or {}).get("datasets", {})
    datasets = {name: DatasetReport(**{k: v for k, v in data.items() if k in COUNT_KEYS})
                for name, data in stored.items()}
    return RequestOutcome(record, datasets, _path(record.export_path),
                          _path(record.certificate_path),
                          record.kind == "erasure" and record.status == "completed")


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None
