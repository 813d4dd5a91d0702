"""Data-subject requests: open, run (access or erasure), list.

`received → verified → in_progress → completed | rejected`; every transition is an
audit entry. Erasure soft-deletes the subject first (recoverable for the subject
dataset's `recover_for`), and on a later run, once that window has passed, erases the
subject and everything linked, children first, through the same batch loop and the
same holds as retention. A held subject's request stays open, naming the hold.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lethe.audit.events import KeysShredded, RequestStep, RequestTransition
from lethe.control.requests import SCRUBBED, RequestRecord, RequestStore
from lethe.control.store import Hold
from lethe.engine.runtime import Runtime
from lethe.engine.steps import StepBuilder, anonymize_effect, identifying
from lethe.engine.sweep import sweep_all
from lethe.errors import LetheError, UsageError
from lethe.holds import HoldScopes
from lethe.requests.certificate import (
    DatasetOutcome,
    build_certificate,
    sign_certificate,
    write_certificate,
)
from lethe.requests.discovery import (
    canonical_subject,
    parse_identities,
    selections,
    subject_rows,
)
from lethe.requests.export import DatasetRows, write_access_export
from lethe.stores.base import (
    FALSE,
    Condition,
    Delete,
    Effect,
    IsNull,
    SetColumns,
    Sweep,
    all_of,
    any_of,
    negate,
)

DUE_AFTER = timedelta(days=30)
KINDS = ("access", "erasure")
TRANSITIONS = {"received": {"verified", "rejected"}, "verified": {"in_progress", "rejected"},
               "in_progress": {"completed", "rejected"}}
DEFAULT_BATCH = 10_000


def requests_of(rt: Runtime) -> RequestStore:
    return RequestStore(rt.control.engine)


def open_request(rt: Runtime, kind: str, subject_kind: str,
                 pairs: list[str]) -> RequestRecord:
    """Open a request; the same open request for the same subject is returned, not doubled."""
    if kind not in KINDS:
        raise UsageError(f"unknown request kind {kind!r} (access or erasure)", path="kind")
    identities = parse_identities(rt.policy, subject_kind, pairs)
    store = requests_of(rt)
    mark = rt.audit.fingerprint(canonical_subject(subject_kind, identities))
    existing = store.find_open(kind, mark)
    if existing is not None:
        return existing
    now = rt.clock.now()
    request_id = store.create(kind, subject_kind, identities, mark, now, now + DUE_AFTER)
    record = store.get(request_id)
    rt.audit.append(RequestTransition(request_id, kind, subject_kind, mark, "received", None))
    return record


def open_bulk(rt: Runtime, kind: str, subject_kind: str, path: Path) -> list[RequestRecord]:
    """One request per CSV row; the header names identities (`email,id`)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise UsageError(f"cannot read: {exc.strerror}", path=str(path)) from None
    except (UnicodeDecodeError, csv.Error):
        raise UsageError("not a UTF-8 CSV file", path=str(path)) from None
    opened = []
    for number, row in enumerate(rows, start=2):
        pairs = [f"{k}={v}" for k, v in row.items() if k and v and v.strip()]
        try:
            opened.append(open_request(rt, kind, subject_kind, pairs))
        except UsageError as exc:
            raise UsageError(exc.message, path=f"{path}:{number}") from None
    return opened


def overdue(record: RequestRecord, now: datetime) -> bool:
    return record.status not in ("completed", "rejected") and now > record.due_at


def transition(rt: Runtime, record: RequestRecord, *statuses: str,
               note: str | None = None, **values: Any) -> RequestRecord:
    """Move through `statuses` in order: one record update, one audit entry per step."""
    current = record.status
    for status in statuses:
        if status not in TRANSITIONS.get(current, set()):
            raise LetheError(f"request {record.id} cannot go from {current} to {status}",
                             path="request")
        current = status
    store = requests_of(rt)
    store.update(record.id, status=current, updated_at=rt.clock.now(), note=note, **values)
    rt.audit.append_many([RequestTransition(record.id, record.kind, record.subject_kind,
                                            record.fingerprint, status, note)
                          for status in statuses])
    return store.get(record.id)


def reject(rt: Runtime, request_id: int, reason: str) -> RequestRecord:
    record = requests_of(rt).get(request_id)
    return transition(rt, record, "rejected", note=reason, identities=SCRUBBED)


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
    certificate: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.record.id, "status": self.record.status,
                                "datasets": {n: r.as_dict() for n, r in self.datasets.items()}}
        if self.record.note:
            data["note"] = self.record.note
        if self.export is not None:
            data["export"] = str(self.export)
        if self.certificate is not None:
            data["certificate"] = str(self.certificate)
        return data


def run_request(rt: Runtime, request_id: int, out_dir: Path,
                batch_size: int = DEFAULT_BATCH) -> RequestOutcome:
    record = requests_of(rt).get(request_id)
    if record.status in ("completed", "rejected"):
        return RequestOutcome(record, record_datasets(record), _path(record.export_path),
                              _path(record.certificate_path))
    rt.prepare()
    matches = _subject_matches(rt, record)
    if matches > 1:
        record = transition(rt, record, "rejected", note=f"identities match {matches} subjects",
                            identities=SCRUBBED)
        return RequestOutcome(record)
    if record.status == "received":
        record = transition(rt, record, "verified", "in_progress")
    elif record.status == "verified":
        record = transition(rt, record, "in_progress")
    if record.kind == "access":
        return _run_access(rt, record, out_dir)
    return _run_erasure(rt, record, out_dir, batch_size)


def _subject_matches(rt: Runtime, record: RequestRecord) -> int:
    """How many subject rows the identities name (more than one: not one person)."""
    subject = rt.policy.subjects[record.subject_kind].dataset
    if record.soft_deleted_at is not None or not record.identities:
        return 1 if record.identities else 0
    condition = subject_rows(rt.policy, record.subject_kind, record.identities)
    return rt.catalog.store_of(subject).count(rt.policy.datasets[subject].table or "",
                                              condition)


def record_datasets(record: RequestRecord) -> dict[str, DatasetReport]:
    stored = (record.result or {}).get("datasets", {})
    return {name: DatasetReport(**{k: v for k, v in data.items()
                                   if k in ("rows", "erased", "retained", "held")})
            for name, data in stored.items()}


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def _run_access(rt: Runtime, record: RequestRecord, out_dir: Path) -> RequestOutcome:
    builder = rt.builder(rt.clock.now())
    found = selections(rt.policy, rt.catalog.graph, builder, record.subject_kind,
                       record.identities)
    exported: list[DatasetRows] = []
    outcome = RequestOutcome(record)
    for name, where in found.items():
        columns, rows = rt.catalog.store_of(name).rows(rt.policy.datasets[name].table or "",
                                                       where)
        exported.append(DatasetRows(name, columns, rows))
        outcome.datasets[name] = DatasetReport(rows=len(rows), action="export")
        rt.audit.append(RequestStep(record.id, name, "exported", len(rows), len(rows), 0, 0,
                                    "export"))
    path = out_dir / f"request-{record.id}-access.zip"
    write_access_export(path, request_id=record.id, organization=rt.policy.organization,
                        subject_kind=record.subject_kind, generated_at=rt.clock.now(),
                        datasets=exported)
    result = {"datasets": {n: r.as_dict() for n, r in outcome.datasets.items()}}
    outcome.record = transition(rt, record, "completed", completed_at=rt.clock.now(),
                                identities=SCRUBBED, result=result, export_path=str(path))
    outcome.export = path
    return outcome


def _held_note(record: RequestRecord, holds: list[Hold], held: dict[str, int]) -> str:
    """Name the holds that reach this subject's rows (not every hold in force)."""
    values = set(record.identities.values())
    relevant = [h for h in holds
                if (h.scope_kind == "dataset" and held.get(h.scope_value))
                or (h.scope_kind == "subject" and h.subject_kind == record.subject_kind
                    and h.scope_value in values)
                or h.scope_kind == "workspace"] or holds
    names = ", ".join(f"hold {h.id} ({h.scope_kind})" for h in relevant)
    where = ", ".join(f"{n}: {c}" for n, c in held.items() if c)
    return f"held by {names}; rows kept: {where}"


def _run_erasure(rt: Runtime, record: RequestRecord, out_dir: Path,
                 batch_size: int) -> RequestOutcome:
    now = rt.clock.now()
    policy = rt.policy
    builder = rt.builder(now)
    found = selections(policy, rt.catalog.graph, builder, record.subject_kind, record.identities)
    subject = policy.subjects[record.subject_kind].dataset
    soft = policy.datasets[subject].soft_delete
    window = soft.recover_for.before(now) if soft else None
    outcome = RequestOutcome(record)

    if soft is not None and window is not None and record.soft_deleted_at is None \
            and soft.recover_for.amount:
        # Phase 1: soft-delete the subject; it stays recoverable for `recover_for`.
        done = _sweep(rt, builder, subject, found[subject], IsNull(soft.column),
                      SetColumns(((soft.column, now),)), deletes=False, batch_size=batch_size)
        rt.audit.append(RequestStep(record.id, subject, "soft_deleted", done, done, 0, 0,
                                    "soft-delete"))
        until = (now + (now - window)).isoformat()
        requests_of(rt).update(record.id, soft_deleted_at=now, updated_at=now,
                               note=f"soft-deleted; recoverable until {until}")
        outcome.record = requests_of(rt).get(record.id)
        outcome.datasets[subject] = DatasetReport(rows=done, action="soft-delete")
        return outcome
    if record.soft_deleted_at is not None and window is not None \
            and record.soft_deleted_at > window:
        outcome.record = record  # still inside the recovery window: nothing more yet
        return outcome

    # Phase 2: erase, children first, each dataset by its own `erasure`.
    holds = rt.hold_scopes(builder)
    subject_ds = policy.datasets[subject]
    subject_ids = rt.catalog.store_of(subject).values(subject_ds.table or "",
                                                      builder.keys[subject], found[subject])
    _shred_first(rt, record, found, holds, subject_ids)
    earlier = _earlier_erasures(rt, record)
    for name, where in found.items():
        ds = policy.datasets[name]
        report = DatasetReport(action="delete" if name == subject else ds.erasure,
                               legal_basis=ds.legal_basis)
        held_cond = holds.held(name, cascading=report.action == "delete")
        store = rt.catalog.store_of(name)
        table = ds.table or ""
        report.held = 0 if held_cond == FALSE else store.count(table, all_of(where, held_cond))
        if report.action == "delete":
            # rows = erased + held + still referenced: no need to count them all first
            referenced = builder.referenced(name)
            now_erased = _sweep(rt, builder, name, where, referenced, Delete(),
                                deletes=True, batch_size=batch_size, keep_matching=True)
            report.retained = 0 if referenced == FALSE else store.count(
                table, all_of(where, referenced, negate(held_cond)))
            # rows an earlier, interrupted run of this request already took count too
            report.erased = now_erased + earlier.get(name, 0)
            report.rows = report.erased + report.held + report.retained
            if report.retained:
                report.legal_basis = "referenced by rows the policy retains"
                if ds.anonymized_fields:  # the row must stay; its personal fields need not
                    _sweep(rt, builder, name, all_of(where, referenced), identifying(ds),
                           anonymize_effect(ds), deletes=False, batch_size=batch_size)
                    report.legal_basis += "; personal fields anonymized"
            outcome.datasets[name] = report
            rt.audit.append(RequestStep(record.id, name, "erased", report.rows, now_erased,
                                        report.retained, report.held, report.action))
            continue
        report.rows = store.count(table, where)
        if report.action == "retain":
            report.retained = report.rows - report.held
        elif report.action == "shred":  # rows stay; their fields die with the subject's key
            report.erased = report.rows - report.held
        elif report.action == "anonymize":
            # The link towards the subject is cut on every linked row, including rows
            # retention already anonymized, or deleting the subject would reach them.
            link = next((c for parent, c in ds.belongs_to.items()
                         if parent == subject or parent in found), None)
            detach = link if link and builder.nullable.get((name, link), False) else None
            todo = identifying(ds) if detach is None else \
                any_of(identifying(ds), negate(IsNull(detach)))
            _sweep(rt, builder, name, where, todo, anonymize_effect(ds, detach),
                   deletes=False, batch_size=batch_size)
            report.erased = report.rows - report.held  # already anonymized rows count too
        outcome.datasets[name] = report
        rt.audit.append(RequestStep(record.id, name, "erased", report.rows, report.erased,
                                    report.retained, report.held, report.action))
    result = {"datasets": {n: r.as_dict() for n, r in outcome.datasets.items()}}
    held = {n: r.held for n, r in outcome.datasets.items()}
    if any(held.values()):
        note = _held_note(record, list(rt.control.holds()), held)
        requests_of(rt).update(record.id, updated_at=now, note=note, result=result)
        outcome.record = requests_of(rt).get(record.id)
        return outcome
    outcome.certificate = _certify(rt, record, outcome, out_dir)
    outcome.record = transition(rt, record, "completed", completed_at=now,
                                identities=SCRUBBED, result=result,
                                certificate_path=str(outcome.certificate))
    return outcome


def _shred_first(rt: Runtime, record: RequestRecord, found: dict[str, Condition],
                 holds: HoldScopes, subject_ids: list[Any]) -> None:
    """Destroy the subject's data key before any row goes, so a crash in between can never
    leave the key alive with no row left to find it by; never while any row is held."""
    shredding = [n for n in found if rt.policy.datasets[n].erasure == "shred"]
    if not shredding or not subject_ids:
        return
    for name, where in found.items():
        held = holds.held(name, cascading=True)
        if held != FALSE and rt.catalog.store_of(name).count(
                rt.policy.datasets[name].table or "", all_of(where, held)):
            return
    keys = rt.subject_keys()
    now = rt.clock.now()
    destroyed = sum(keys.shred(record.subject_kind, value, now) for value in subject_ids)
    rt.audit.append(KeysShredded(f"request:{record.id}", record.subject_kind, destroyed))


def _earlier_erasures(rt: Runtime, record: RequestRecord) -> dict[str, int]:
    """Rows earlier runs of this request deleted (a run that stopped for a hold, or died):
    the certificate must account for them, though they are no longer there to count."""
    erased: dict[str, int] = {}
    for entry in rt.audit.entries(target=f"request:{record.id}", action="request.erased"):
        details = json.loads(entry.details)
        if details.get("action") == "delete":
            erased[details["dataset"]] = erased.get(details["dataset"], 0) + int(details["done"])
    return erased


def _sweep(rt: Runtime, builder: StepBuilder, name: str, where: Condition,
           extra: Condition, effect: Effect, *, deletes: bool, batch_size: int,
           keep_matching: bool = False) -> int:
    """Sweep the subject's rows of one dataset; `extra` narrows (or, with keep_matching,
    excludes) them. Holds are re-read before every batch."""
    ds = rt.policy.datasets[name]
    narrowed = all_of(where, negate(extra)) if keep_matching else all_of(where, extra)

    def make_sweep() -> Sweep:
        holds = rt.hold_scopes(builder)
        return Sweep(ds.table or "", builder.keys[name],
                     all_of(narrowed, negate(holds.held(name, cascading=deletes))), effect,
                     selective=True)

    return sweep_all(rt.catalog.store_of(name), make_sweep, batch_size).rows


def _certify(rt: Runtime, record: RequestRecord, outcome: RequestOutcome,
             out_dir: Path) -> Path:
    now = rt.clock.now()
    evidence = [(e.seq, e.hash) for e in rt.audit.entries(target=f"request:{record.id}")]
    signed = rt.audit.checkpoints()
    last = rt.audit.checkpoint() or (signed[-1] if signed else None)
    body = build_certificate(
        organization=rt.policy.organization, request_id=record.id,
        subject_kind=record.subject_kind, subject_fingerprint=record.fingerprint,
        received_at=record.received_at, completed_at=now,
        outcomes=[DatasetOutcome(n, r.rows, r.erased, r.retained, r.held, r.action,
                                 r.legal_basis if r.retained else None)
                  for n, r in outcome.datasets.items()],
        audit_entries=evidence,
        audit_checkpoint=(last.seq, last.head_hash) if last is not None else None)
    document = sign_certificate(body, rt.audit.key())
    json_path, _html = write_certificate(document, out_dir,
                                         stem=f"request-{record.id}-certificate")
    return json_path


__all__ = ["open_bulk", "open_request", "overdue", "reject", "requests_of", "run_request",
           "transition"]
