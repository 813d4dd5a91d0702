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
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from lethe.audit.events import RequestStep, RequestTransition
from lethe.control.certificates import CertificateStore
from lethe.control.requests import SCRUBBED, RequestRecord
from lethe.control.tx import transaction
from lethe.defaults import BATCH_SIZE, ERASURE_GROUP_SIZE
from lethe.engine.plan import builder_for
from lethe.engine.subjects import keyed_datasets
from lethe.errors import UsageError
from lethe.policy.model import REQUEST_DEADLINE, template_fields
from lethe.requests.ahead import Ahead
from lethe.requests.certificate import certificate_paths, reading_order, write_certificate
from lethe.requests.discovery import (
    canonical_subject,
    check_identities,
    identity_types,
    parse_identities,
    resolve_subjects,
    selections,
    subject_rows,
)
from lethe.requests.export import DatasetRows, write_access_export
from lethe.requests.phases import Erasure, erase_subjects, erasure_of
from lethe.requests.records import (
    DatasetReport,
    RequestOutcome,
    finished_outcome,
    requests_of,
    transition,
)
from lethe.requests.subjects import Certifications, Subject
from lethe.requests.termination import is_termination, terminate
from lethe.runtime import Runtime
from lethe.stores.base import Condition, Value

DUE_AFTER = REQUEST_DEADLINE
KINDS = ("access", "erasure")


def open_request(rt: Runtime, kind: str, subject_kind: str, pairs: list[str],
                 workspace: str | None = None) -> RequestRecord:
    """Open a request; the same open request for the same subject is returned, not doubled."""
    return open_many(rt, kind, subject_kind, [pairs], workspace=workspace)[0]


def open_many(rt: Runtime, kind: str, subject_kind: str, subjects: Sequence[Sequence[str]],
              where: Callable[[int], str] | None = None,
              workspace: str | None = None) -> list[RequestRecord]:
    """One request per subject's `NAME=VALUE` pairs, opened in one transaction with one
    audit append; a subject with a request already open (or twice in the list) gets
    that one. Nothing is opened if any subject is invalid (`where(i)` names it).

    A `workspace` request only ever matches that workspace's subject rows: the subject
    dataset's workspace column becomes one more identity every row must match."""
    if kind not in KINDS:
        raise UsageError(f"unknown request kind {kind!r} (access or erasure)", path="kind")
    scope = _workspace_identity(rt, subject_kind, workspace)
    types: dict[str, str] | None = None
    parsed = []
    for index, pairs in enumerate(subjects):
        try:
            named = parse_identities(rt.policy, subject_kind, pairs)
            types = identity_types(rt, subject_kind) if types is None else types
            check_identities(types, subject_kind, named)
            identities = named | scope
        except UsageError as exc:
            raise UsageError(exc.message, path=where(index) if where else exc.path) from None
        parsed.append((identities,
                       rt.audit.fingerprint(canonical_subject(subject_kind, identities))))
    store = requests_of(rt)
    now = rt.clock.now()
    # one write transaction: the requests already open are read under the audit log's
    # append lock (no other writer can open the same subject's request in between), the
    # new ones created (as written: RETURNING) with their entries
    with transaction(rt.control.engine, "opening requests") as conn:
        rt.audit.lock(conn)
        existing = store.open_by_fingerprint(kind, [mark for _, mark in parsed], conn=conn)
        fresh: dict[str, dict[str, str]] = {}
        for identities, mark in parsed:
            if mark not in existing:
                fresh.setdefault(mark, identities)
        if not fresh:  # every one already open: nothing to write
            return [existing[mark] for _, mark in parsed]
        created = store.create_many(kind, subject_kind, [(i, m) for m, i in fresh.items()],
                                    now, now + DUE_AFTER, workspace, conn=conn)
        rt.audit.append_many([RequestTransition(record.id, kind, subject_kind, mark,
                                                "received", None)
                              for record, mark in zip(created, fresh, strict=True)],
                             conn=conn)
    opened = dict(zip(fresh, created, strict=True)) | existing
    return [opened[mark] for _, mark in parsed]


def _workspace_identity(rt: Runtime, subject_kind: str,
                        workspace: str | None) -> dict[str, str]:
    subjects = rt.policy.subjects
    if workspace is None or subject_kind not in subjects:
        return {}  # an unknown kind is parse_identities' error to name
    column = rt.policy.datasets[subjects[subject_kind].dataset].workspace
    if column is None:
        raise UsageError(f"subject kind {subject_kind!r} is not kept per workspace "
                         "(its dataset declares no workspace column)", path="subject")
    return {column: workspace}


def open_bulk(rt: Runtime, kind: str, subject_kind: str, path: Path) -> list[RequestRecord]:
    """One request per CSV row; the header names identities (`email,id`)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise UsageError(f"cannot read: {exc.strerror}", path=str(path)) from None
    except (UnicodeDecodeError, csv.Error):
        raise UsageError("not a UTF-8 CSV file", path=str(path)) from None
    subjects = [[f"{k}={v}" for k, v in row.items() if k and v and v.strip()] for row in rows]
    return open_many(rt, kind, subject_kind, subjects,
                     where=lambda index: f"{path}:{index + 2}")


def overdue(record: RequestRecord, now: datetime) -> bool:
    return record.status not in ("completed", "rejected") and now > record.due_at


def reject(rt: Runtime, request_id: int, reason: str) -> RequestRecord:
    record = requests_of(rt).get(request_id)
    return transition(rt, record, "rejected", note=reason, identities=SCRUBBED)


def _to_in_progress(record: RequestRecord) -> list[str]:
    return {"received": ["verified", "in_progress"], "verified": ["in_progress"]}.get(
        record.status, [])


def run_request(rt: Runtime, request_id: int, out_dir: Path,
                batch_size: int = BATCH_SIZE, *,
                certificate_files: bool = True) -> RequestOutcome:
    """Carry out one request; an erasure's certificate is kept in the control store, and
    written to `out_dir` too unless `certificate_files` is off."""
    record = requests_of(rt).get(request_id)
    if record.status in ("completed", "rejected"):
        if certificate_files:
            _files_again(rt, record)
        return finished_outcome(record)
    rt.prepare()
    if is_termination(rt, record):
        record = transition(rt, record, *_to_in_progress(record))
        return terminate(rt, record, out_dir if certificate_files else None, batch_size)
    why = _refused(rt, record)
    if why is not None:  # opened before identities were checked at open: this one only
        record = transition(rt, record, "rejected", note=why, identities=SCRUBBED)
        return RequestOutcome(record)
    keys = _subject_keys(rt, record)
    if len(keys) > 1 and record.soft_deleted_at is None:
        record = transition(rt, record, "rejected", note=f"identities match {len(keys)} subjects",
                            identities=SCRUBBED)
        return RequestOutcome(record)
    if record.kind == "access":
        return _run_access(rt, transition(rt, record, *_to_in_progress(record)), out_dir)
    # in progress with its baselines, in their transaction (subjects.start)
    subject = Subject(record, keys[0] if keys else None, tuple(_to_in_progress(record)))
    erase_subjects(rt, record.subject_kind, [subject],
                   out_dir if certificate_files else None, batch_size)
    return subject.outcome


def write_missing_certificates(rt: Runtime, records: Sequence[RequestRecord]) -> None:
    """The certificate files of these completed requests that a killed run did not write
    (`_files_again`)."""
    for record in records:
        _files_again(rt, record)


def _files_again(rt: Runtime, record: RequestRecord) -> None:
    """A completed erasure whose certificate files are missing — the process that
    completed it was killed before it wrote them (they are written once the completion
    has committed) — gets them again, from the certificate kept in the control store."""
    if record.certificate_path is None:
        return
    path = Path(record.certificate_path)
    stem = path.name.removesuffix(".json")
    if all(p.exists() for p in certificate_paths(path.parent, stem)):
        return
    document = stored_certificate(rt, record.id)
    if document is not None:  # (killed between the two files: both written again)
        write_certificate(document, path.parent, stem=stem)


def _refused(rt: Runtime, record: RequestRecord) -> str | None:
    """Why the request's identities cannot be matched (None: they can)."""
    if not record.identities:
        return None
    types = identity_types(rt, record.subject_kind)
    named = {n: v for n, v in record.identities.items() if n in types}
    try:
        check_identities(types, record.subject_kind, named)
    except UsageError as exc:
        return exc.message
    return None


def _subject_keys(rt: Runtime, record: RequestRecord) -> list[Value]:
    """Keys of the subject rows the identities name (more than one: not one person)."""
    if not record.identities:
        return []
    subject = rt.policy.subjects[record.subject_kind].dataset
    return rt.catalog.store_of(subject).values(
        rt.policy.datasets[subject].table or "", rt.catalog.key_of(subject),
        subject_rows(rt.policy, record.subject_kind, record.identities))


def run_many(rt: Runtime, request_ids: Sequence[int], out_dir: Path,
             batch_size: int = BATCH_SIZE, group_size: int = ERASURE_GROUP_SIZE, *,
             certificate_files: bool = False) -> list[RequestOutcome]:
    """Run many requests: erasures of one subject kind go through in groups (one sweep
    per dataset for a whole group); access requests, and subjects whose identities do
    not name exactly one row plainly, go one by one. A group's certificates go to the
    control store; to files in `out_dir` too only with `certificate_files` (access
    exports always go to `out_dir`)."""
    records = requests_of(rt).get_many(list(request_ids))
    outcomes: dict[int, RequestOutcome] = {}
    alone: list[int] = []
    pending: dict[str, list[RequestRecord]] = {}
    for record in records:
        if record.kind == "erasure" and record.status not in ("completed", "rejected") \
                and record.identities and not is_termination(rt, record) \
                and _refused(rt, record) is None:
            pending.setdefault(record.subject_kind, []).append(record)
        else:
            alone.append(record.id)
    if pending:
        rt.prepare()
    chunks = [(kind, group[start:start + group_size]) for kind, group in pending.items()
              for start in range(0, len(group), group_size)]
    # each group made ready (its subjects found, counted, in progress) on one thread
    # while the one before is erased, and certified on another while the next is erased
    with Certifications() as certifications, \
            Ahead(chunks, partial(_ready, rt, batch_size), "lethe-ready") as ready:
        for chunk, subjects, erasure in ready:
            certifications.check()  # a group that could not be certified stops the run
            erasure.run(out_dir if certificate_files else None, certifications.submit)
            outcomes.update((s.record.id, s.outcome) for s in subjects)
            erased = {s.record.id for s in subjects}
            alone += [r.id for r in chunk if r.id not in erased]
    for request_id in alone:
        outcomes[request_id] = run_request(rt, request_id, out_dir, batch_size,
                                           certificate_files=certificate_files)
    return [outcomes[r.id] for r in records]


def _ready(rt: Runtime, batch_size: int, chunk: tuple[str, list[RequestRecord]]
           ) -> tuple[list[RequestRecord], list[Subject], Erasure]:
    """A chunk of one kind's erasure requests made ready to erase: each subject found
    (those whose identities name no single row plainly go alone), its group built and
    begun (`Erasure.begin`: in progress with its baselines, in their transaction)."""
    subject_kind, records = chunk
    keys = resolve_subjects(rt, subject_kind, records)
    subjects = [Subject(r, keys[r.id], tuple(_to_in_progress(r)))
                for r in records if r.id in keys]
    erasure = erasure_of(rt, subject_kind, subjects, batch_size)
    erasure.begin()
    return records, subjects, erasure


def stored_certificate(rt: Runtime, request_id: int) -> dict[str, Any] | None:
    """The signed certificate lethe keeps for a request (None: there is none)."""
    text = CertificateStore(rt.control.engine).get(request_id)
    return None if text is None else reading_order(dict(json.loads(text)))


def _run_access(rt: Runtime, record: RequestRecord, out_dir: Path) -> RequestOutcome:
    builder = builder_for(rt, rt.clock.now())
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
    for name, (columns, rows) in _keyed_exports(rt, record, found).items():
        exported.append(DatasetRows(name, columns, rows))
        outcome.datasets[name] = DatasetReport(rows=len(rows), action="export")
        rt.audit.append(RequestStep(record.id, name, "exported", len(rows), len(rows), 0, 0,
                                    "export"))
    path = out_dir / f"request-{record.id}-access.zip"
    write_access_export(path, request_id=record.id, organization=rt.policy.organization,
                        subject_kind=record.subject_kind, generated_at=rt.clock.now(),
                        datasets=exported)
    outcome.record = transition(rt, record, "completed", completed_at=rt.clock.now(),
                                identities=SCRUBBED, result=outcome.result(),
                                export_path=str(path.absolute()))  # (from any directory)
    outcome.export = path
    return outcome


def _keyed_exports(rt: Runtime, record: RequestRecord, found: Mapping[str, Condition]
                   ) -> dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """The subject's Redis keys and objects, through each dataset's `per_subject`."""
    subject = rt.policy.subjects[record.subject_kind].dataset
    exports = {}
    for name, handler in keyed_datasets(rt, record.subject_kind).items():
        columns = list(template_fields(rt.policy.datasets[name].per_subject[record.subject_kind]))
        rows = rt.catalog.store_of(subject).select(rt.policy.datasets[subject].table or "",
                                                   columns, found[subject])
        subjects = [(str(i), dict(zip(columns, row, strict=True)))
                    for i, row in enumerate(rows)]
        keys = sorted({k for ks in handler.keys_by_subject(
            name, record.subject_kind, subjects).values() for k in ks})
        exports[name] = handler.export(name, keys)
    return exports


__all__ = ["DatasetReport", "RequestOutcome", "open_bulk", "open_many", "open_request",
           "overdue", "reject", "requests_of", "run_many", "run_request", "transition"]
