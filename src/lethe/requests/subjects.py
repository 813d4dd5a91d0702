"""A subject of an erasure run: its request and outcome, how its rows are told apart from
other subjects' in a group (attribution), the certificate that closes it, and the note
that says which holds keep it open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from lethe.control.certificates import CertificateStore
from lethe.control.requests import SCRUBBED, RequestRecord, RequestStore
from lethe.control.store import Hold
from lethe.control.tx import transaction
from lethe.engine.archive import ArchivePending
from lethe.errors import LetheError
from lethe.holds import holds_reaching
from lethe.policy.model import Policy
from lethe.requests.certificate import (
    DatasetOutcome,
    build_certificate,
    certificate_paths,
    cite,
    signed_text,
    write_certificate,
)
from lethe.requests.records import RequestOutcome, transition_many
from lethe.runtime import Runtime
from lethe.stores.base import Value

WRITERS = 4  # threads writing certificate files
Later = Callable[[Callable[[], None]], None]  # hands a group's certification off


class Certifications:
    """A bulk run's certifications, handed off: each group's certificates are signed and
    its requests completed on one background thread, one group after another, while the
    caller counts and erases the next group. Those are mostly database waits and these
    mostly Python, so the two overlap (a group's erasure is unchanged: it is certified
    after its rows are gone, in its own control-store transaction; a run killed between
    the two leaves requests in progress that a rerun certifies, as before). `check`
    raises the first failed certification before the caller starts another group, and
    leaving waits for every one (raising the first failure, unless an error already
    leaves)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lethe-certify")
        self._pending: list[Future[None]] = []

    def __enter__(self) -> Certifications:
        return self

    def submit(self, certify: Callable[[], None]) -> None:
        self._pending.append(self._pool.submit(certify))

    def check(self) -> None:
        """Raise the first certification that failed so far (in the order handed off)."""
        for done in [f for f in self._pending if f.done()]:
            self._pending.remove(done)
            done.result()

    def __exit__(self, error: type[BaseException] | None, *_: object) -> None:
        self._pool.shutdown(wait=True)
        if error is None:
            for certification in self._pending:
                certification.result()


@dataclass
class Subject:
    record: RequestRecord
    key: Value | None  # the subject row's key; None when no row matched
    # the statuses this run moves it through into in_progress, before any work: written
    # with its baselines, in their transaction (`start`)
    moving: tuple[str, ...] = ()
    # this run moves the request into in_progress: no run before it stored baselines or
    # pointers (they are stored only once a request is in progress), none to read
    begun_now: bool = field(init=False)
    outcome: RequestOutcome = field(init=False)
    # the key as text, as rows are told apart by (read ten times a subject a dataset)
    mark: str = field(init=False)

    def __post_init__(self) -> None:
        self.begun_now = bool(self.moving)
        self.outcome = RequestOutcome(self.record)
        self.mark = "" if self.key is None else str(self.key)


def start(rt: Runtime, subjects: Sequence[Subject],
          conn: Connection | None = None) -> list[tuple[Subject, RequestRecord]]:
    """Move the subjects' requests through the statuses they are still `moving`
    through, audited. In a transaction of its own, the subjects then say so; in `conn`'s
    (the one that stores their baselines: a request goes in progress with the counts
    its erasure began from), the moves are returned, for `started` once it commits (a
    rollback leaves them still moving)."""
    moving = [s for s in subjects if s.moving]
    if not moving:
        return []
    moves = list(zip(moving, transition_many(rt, [(s.record, s.moving, {}) for s in moving],
                                             conn=conn), strict=True))
    if conn is None:
        started(moves)
        return []
    return moves


def started(moves: Sequence[tuple[Subject, RequestRecord]]) -> None:
    """The subjects' requests are in progress, as these committed records say."""
    for s, record in moves:
        s.record = s.outcome.record = record
        s.moving = ()


def certify_and_complete(rt: Runtime, done: Sequence[Subject], now: datetime,
                         out_dir: Path | None, *,
                         first: Callable[[Connection | None], None] | None = None) -> None:
    """One signed certificate per subject, all citing one fresh signed checkpoint, and
    each request completed with it — in one control-store transaction: the evidence
    (the requests' audit entries) read, the checkpoint signed, the certificates signed
    and kept, the requests completed and audited, their baselines cleared. All of it
    commits, or none of it and a rerun redoes it. Then the files go to `out_dir` (unless
    None; their names are known before): a file is never signed evidence the log does
    not have (a process killed before them leaves a completed request whose files are
    missing; the kept certificate writes them again: `run_request`). `first` writes to
    the transaction before anything is read (the entries this run adds: they are then
    in the evidence, under the checkpoint); if a certificate cannot be made (its counts
    do not add up), nothing is certified and `first` writes them alone. Each subject's
    outcome is then the completed record, certified, with its file."""
    targets = [f"request:{s.record.id}" for s in done]
    evidence: dict[str, list[tuple[int, str]]] = {t: [] for t in targets}
    # checked and loaded first: nothing but the store can fail in the transaction,
    # which would take this run's entries (`first`) with it
    try:
        bodies = [_certificate(rt, s, now) for s in done]
    except LetheError:
        if first is not None:
            with suppress(LetheError):  # the certificate's error is the one told
                first(None)
        raise
    key = rt.audit.key()
    stems = [f"request-{s.record.id}-certificate" for s in done]
    # recorded absolute: a later run, from another directory, finds (or writes again)
    # the files where this one put them
    paths = [None if out_dir is None else certificate_paths(out_dir.absolute(), stem)[0]
             for stem in stems]
    with transaction(rt.control.engine, "certifying and completing erasures") as conn:
        if first is not None:
            first(conn)
        for target, seq, digest in rt.audit.cited(targets, conn):
            evidence[target].append((seq, digest))
        last = rt.audit.checkpoint(conn)
        if last is None:
            signed = rt.audit.checkpoints(conn)
            last = signed[-1] if signed else None
        checkpoint = (last.seq, last.head_hash) if last is not None else None
        kept = [signed_text(cite(body, evidence[target], checkpoint), key)
                for body, target in zip(bodies, targets, strict=True)]
        documents = [(document, stem) for (document, _), stem in zip(kept, stems, strict=True)]
        CertificateStore(rt.control.engine).put_many(
            [(s.record.id, text) for s, (_, text) in zip(done, kept, strict=True)], conn=conn)
        records = transition_many(rt, [
            (s.record, ["completed"],
             {"completed_at": now, "identities": SCRUBBED, "result": s.outcome.result(),
              "certificate_path": str(path) if path else None})
            for s, path in zip(done, paths, strict=True)], conn=conn)
        RequestStore(rt.control.engine).clear_baselines([s.record.id for s in done],
                                                        conn=conn)
    if last is not None:
        rt.audit.witness([last])
    for s, record, path in zip(done, records, paths, strict=True):
        s.outcome.record, s.outcome.certificate = record, path
        s.outcome.certified = True
    _written(documents, out_dir)


def _certificate(rt: Runtime, s: Subject, now: datetime) -> dict[str, Any]:
    """The certificate's body for one subject, unsigned, its evidence to be cited."""
    record = s.record
    return build_certificate(
        organization=rt.policy.organization, request_id=record.id,
        subject_kind=record.subject_kind, subject_fingerprint=record.fingerprint,
        received_at=record.received_at, completed_at=now, due_at=record.due_at,
        outcomes=[DatasetOutcome(n, r.rows, r.erased, r.retained, r.held, r.action,
                                 r.legal_basis if r.retained else None)
                  for n, r in s.outcome.datasets.items()],
        audit_entries=(), audit_checkpoint=None)


def _written(documents: Sequence[tuple[dict[str, Any], str]],
             out_dir: Path | None) -> list[Path | None]:
    """The signed certificates' files in `out_dir` (none when it is None)."""
    if out_dir is None:
        return [None] * len(documents)
    target = out_dir

    def write(document: tuple[dict[str, Any], str]) -> Path:
        return write_certificate(document[0], target, stem=document[1])[0]

    if len(documents) == 1:  # one request: starting threads would cost more than the file
        return [write(documents[0])]
    # Creating files is latency, not work: overlap it (each file still lands atomically).
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        return list(pool.map(write, documents))


def held_note(subject: Subject, holds: Sequence[Hold]) -> str:
    """Name the holds that reach this subject's rows (not every hold in force)."""
    record = subject.record
    held = {n: r.held for n, r in subject.outcome.datasets.items()}
    values = {*record.identities.values(), subject.mark}
    relevant = holds_reaching(holds, record.subject_kind, values,
                              {n for n, c in held.items() if c})
    names = ", ".join(f"hold {h.id} ({h.scope_kind})" for h in relevant)
    where = ", ".join(f"{n}: {c}" for n, c in held.items() if c)
    return f"held by {names}; rows kept: {where}"


def stopped(exc: LetheError, first_not_done: str) -> tuple[str, str, str | None]:
    """Where an error stopped a request, its note, and the error to tell (None: it only
    waits). Waiting for archived chunks (cold, or left unsettled) is not a failure and
    stops at the dataset whose archive it waits for; an error, at the first dataset not
    done."""
    if isinstance(exc, ArchivePending):
        return exc.dataset, f"waiting at {exc.dataset}: {exc}", None
    return first_not_done, (f"stopped at {first_not_done}: {exc}; nothing was certified: "
                            "run the request again once the cause is fixed"), str(exc)


def groupable(policy: Policy, order: Sequence[str], subject: str) -> bool:
    """Can rows be told apart by subject? Each dataset linked to the subject must reach
    it through exactly one `belongs_to` parent; otherwise subjects go one at a time.
    `order`: the datasets, children first."""
    linked = {subject}
    for name in reversed(order):  # parents first
        parents = [p for p in policy.datasets[name].belongs_to if p in linked]
        if len(parents) > 1:
            return False
        if parents:
            linked.add(name)
    return True
