"""A workspace's termination: open it, wait out its recovery window, erase, certify.

`lethe request open erasure --workspace ID` (or the API, an organization admin key only)
opens an erasure request whose subject is the workspace itself (subject kind
`workspace`): due `termination.within` after it is received. Until `recover_for` has
passed, a run touches nothing (the request can still be rejected: cancelled). After
that, a run erases the workspace everywhere (lethe.engine.termination_plan) through the
one executor, batch by batch under the holds; a run a hold stops leaves the request
`in_progress`, naming the holds, and a later run finishes it. What it found is counted
before the first row goes (the baselines, as for any erasure), so a run killed part way
still certifies every row; the certificate is signed like any erasure's, with the
workspace's fingerprint as its subject.

Attribution is by workspace, not by person: there is one certificate, for the whole
workspace, and no per-person counts. Where holds must be matched to a person (a subject
hold and the subject's data key, archived rows or the address its rows point at) the
termination keeps everything such a hold could reach rather than guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime
from pathlib import Path

from lethe.audit.events import KeysShredded, RequestErased, RequestTransition
from lethe.control.requests import RequestRecord
from lethe.control.tx import transaction
from lethe.engine.erasure_plan import Erased, EraseRows, RemoveKeyed, pointed_rows
from lethe.engine.executor import Executor
from lethe.engine.plan import builder_for
from lethe.engine.steps import StepBuilder
from lethe.engine.subjects import SubjectReach, archived_rows
from lethe.engine.termination_plan import (
    build_termination_plan,
    subject_kinds,
    workspace_rows,
)
from lethe.errors import LetheError, UsageError
from lethe.holds import HoldScopes
from lethe.policy.model import TERMINATION
from lethe.requests.discovery import canonical_subject
from lethe.requests.records import DatasetReport, RequestOutcome, requests_of
from lethe.requests.subjects import Subject, certify_and_complete, stopped
from lethe.runtime import Runtime
from lethe.stores.base import FALSE, Condition, In, Value, all_of, negate

Counts = dict[str, int]
KEYS = "@"  # a baseline named @KIND keeps the subjects' keys (dataset names cannot be so)


def open_termination(rt: Runtime, workspace: str) -> RequestRecord:
    """Open the termination of a workspace (the open one is returned, not doubled)."""
    terms = rt.policy.termination
    if terms is None:
        raise UsageError("the policy declares no `termination:` (within, recover_for): "
                         "add it to terminate workspaces", path="--workspace")
    if not workspace.strip() or any(ord(c) < 32 for c in workspace):
        raise UsageError("workspace id is empty or holds control characters",
                         path="--workspace")
    identities = {TERMINATION: workspace}
    mark = rt.audit.fingerprint(canonical_subject(TERMINATION, identities))
    store = requests_of(rt)
    existing = store.open_by_fingerprint("erasure", [mark])
    if mark in existing:
        return existing[mark]
    now = rt.clock.now()
    due = terms.within.after(now)
    assert due is not None, "termination.within is finite (policy)"
    with transaction(rt.control.engine, "opening a termination") as conn:
        [record] = store.create_many("erasure", TERMINATION, [(identities, mark)], now,
                                     due, workspace, conn=conn)
        rt.audit.append_many([RequestTransition(record.id, "erasure", TERMINATION, mark,
                                                "received", None)], conn=conn)
    return record


def terminate(rt: Runtime, record: RequestRecord, out_dir: Path | None,
              batch_size: int) -> RequestOutcome:
    """The next step of a termination already `in_progress`: nothing while it can still
    be cancelled, else the erasure (and, when nothing is held, the certificate)."""
    terms = rt.policy.termination
    if terms is None:
        raise UsageError("the policy declares no `termination:` any more: request "
                         f"{record.id} terminates a workspace", path="termination")
    now = rt.clock.now()
    until = terms.recover_for.after(record.received_at)
    if until is not None and now < until:
        note = (f"termination recoverable until {until.isoformat()}: nothing erased yet "
                f"(`lethe request reject {record.id}` cancels it)")
        if record.note != note:
            requests_of(rt).update_each([(record.id, {"updated_at": now, "note": note})])
            record = requests_of(rt).get(record.id)
        return RequestOutcome(record)
    try:
        termination = Termination(rt, builder_for(rt, now), record, batch_size)
    except LetheError as exc:  # the plan could not be made: nothing was touched
        requests_of(rt).update_each([(record.id, {"updated_at": now, "note": (
            f"stopped before erasing anything: {exc}; run the request again once the "
            "cause is fixed")})])
        outcome = RequestOutcome(requests_of(rt).get(record.id))
        outcome.error = str(exc)
        return outcome
    return termination.run(out_dir, now)


class Termination:
    """One run of a workspace's erasure: the request's side of the plan (the executor's
    `Tally`), with everything attributed to the one workspace."""

    def __init__(self, rt: Runtime, builder: StepBuilder, record: RequestRecord,
                 batch_size: int) -> None:
        self.rt, self.builder, self.record, self.batch_size = rt, builder, record, batch_size
        self.policy = rt.policy
        self.workspace = record.identities.get(TERMINATION) or record.workspace or ""
        rows = workspace_rows(rt, builder, self.workspace)
        # each kind's subject rows as they are now: their keys and template columns
        self.subject_rows: dict[str, list[tuple[Value, dict[str, object]]]] = {
            kind: self._subject_rows(kind, rows) for kind in subject_kinds(rt, rows)}
        store = requests_of(rt)
        self._baselines = store.baselines([record.id]).get(record.id)
        pinned = store.pointers([record.id]).get(record.id) or {}
        if self._baselines is None:  # the run that begins it pins what its rows point at
            pinned = self._pointed(rows)
        self.pointed = {n: keys for n, keys in pinned.items() if not n.startswith(KEYS)}
        # each kind's subjects when the termination began (their data keys go even if an
        # earlier run deleted their rows) and those who joined the workspace since
        self.subject_keys = {kind: sorted({*pinned.get(KEYS + kind, ()),
                                           *(str(k) for k, _ in found)})
                             for kind, found in self.subject_rows.items()}
        self.plan = build_termination_plan(
            rt, builder, rows,
            {k: [key for key, _ in found] for k, found in self.subject_rows.items()},
            {n: list(keys) for n, keys in self.pointed.items()})
        self.where = self.plan.where
        self.executor = Executor(rt, builder)
        self.outcome = RequestOutcome(record)
        self._steps: dict[str, dict[str, int | str]] = {}
        self._found_keys: dict[tuple[str, str], dict[str, list[str]]] = {}
        self._found_before = 0
        self._keyed: dict[str, tuple[int, int, int]] = {}  # dataset -> erased, held, retained
        self._unreached: list[str] = []  # data keys a subject hold kept

    # -- reading ------------------------------------------------------------------------
    def _table(self, name: str) -> str:
        return self.policy.datasets[name].table or ""

    def _subject_rows(self, kind: str, rows: dict[str, Condition]
                      ) -> list[tuple[Value, dict[str, object]]]:
        subject = self.policy.subjects[kind].dataset
        columns = SubjectReach(self.rt, self.builder, kind).columns()
        found = self.rt.catalog.store_of(subject).select(
            self._table(subject), [self.builder.keys[subject], *columns], rows[subject])
        return [(row[0], dict(zip(columns, row[1:], strict=True))) for row in found]

    def _pointed(self, rows: dict[str, Condition]) -> dict[str, list[str]]:
        """The keys of the `referenced_by` rows the workspace's rows point at now."""
        pointed: dict[str, list[str]] = {}
        for name in self.builder.keys:
            where = FALSE if name in rows else pointed_rows(self.builder, name, rows, None)
            if where != FALSE:
                pointed[name] = sorted({str(v) for v in self.rt.catalog.store_of(name).values(
                    self._table(name), self.builder.keys[name], where)})
        return pointed

    def count(self, name: str, where: Condition) -> int:
        if where == FALSE:
            return 0
        return self.rt.catalog.store_of(name).count(self._table(name), where)

    def _subjects_held(self, holds: HoldScopes) -> bool:
        """Could a subject hold reach a subject of the workspace (its row, held now, or
        its key named by the hold)? Then what only the person links (data keys, archived
        rows, addresses) stays: the termination cannot tell whose they are."""
        for kind, keys in self.subject_keys.items():
            values = set(holds.subject_values(kind))
            if not values:
                continue
            subject = self.policy.subjects[kind].dataset
            if values & set(keys) or self.count(
                    subject, all_of(self.where[subject], holds.held(subject, cascading=True))):
                return True
        return False

    # -- the run ------------------------------------------------------------------------
    def run(self, out_dir: Path | None, now: datetime) -> RequestOutcome:
        try:
            self._begin()
            self.executor.erase(self.plan, self, self.batch_size)
        except LetheError as exc:
            self._stopped(now, exc)
            return self.outcome
        except BaseException:
            with suppress(LetheError):  # audit what was done; the first error is the one told
                self._audit()
            raise
        self._audit()
        held = [n for n, r in self.outcome.datasets.items() if r.held]
        if held or self._unreached:
            self._note_held(now, held)
            return self.outcome
        subject = Subject(self.record, None)
        subject.outcome = self.outcome
        certify_and_complete(self.rt, [subject], now, out_dir)
        return self.outcome

    def _begin(self) -> None:
        """The baselines: every dataset's rows (archived ones too) and keyed items of the
        workspace, counted and stored with the pinned pointers and subject keys, before
        the first row goes."""
        if self._baselines is not None:
            return
        counts = {name: self.count(name, where) for name, where in self.where.items()}
        for action in self.plan.actions:
            if isinstance(action, EraseRows) and action.archive_column is not None:
                counts[action.dataset] += self._archived(
                    action.dataset, action.archive_column, settled=True)
            elif isinstance(action, RemoveKeyed):
                found = self.keys_of(action.dataset, action.subject_kind)
                counts[action.dataset] = counts.get(action.dataset, 0) + \
                    sum(len(keys) for keys in found.values())
        pinned = dict(self.pointed)
        for kind, keys in self.subject_keys.items():
            counts[KEYS + kind], pinned[KEYS + kind] = len(keys), keys
        requests_of(self.rt).set_baselines({self.record.id: counts}, {self.record.id: pinned})
        self._baselines = counts

    def _archived(self, name: str, column: str, *, settled: bool = False) -> int:
        """The workspace's rows in the dataset's archives now, held or not (`settled`:
        waiting for chunks an interrupted archive run left, as baselines must)."""
        return sum(archived_rows(self.rt, name, column, {self.workspace: self.workspace},
                                 settled=settled).values())

    def _baseline(self, name: str) -> int:
        return (self._baselines or {}).get(name, 0)

    # -- the Tally the executor reports to ----------------------------------------------
    def column(self, dataset: str) -> str | None:
        return None  # one workspace: totals are its counts

    def unheld(self, holds: HoldScopes, subject_kind: str) -> list[Value]:
        """The kind's subjects whose data keys may go: none while any row of the
        workspace is held (a held row may be a subject's), else those no subject hold
        can reach."""
        keys: list[Value] = list(self.subject_keys.get(subject_kind, []))
        if any(self.count(n, all_of(w, holds.held(n, cascading=True)))
               for n, w in self.where.items()) or self._subjects_held(holds):
            if keys:
                self._unreached.append(f"data keys of {subject_kind}")
            return []
        return keys

    def shredded(self, destroyed: Sequence[Value], subject_kind: str) -> None:
        self.rt.audit.append(KeysShredded(f"request:{self.record.id}", subject_kind,
                                          len(destroyed)))

    def keys_of(self, dataset: str, subject_kind: str) -> dict[str, list[str]]:
        found = self._found_keys.get((dataset, subject_kind))
        if found is None:
            reach = SubjectReach(self.rt, self.builder, subject_kind)
            found = reach.keys_of(dataset, [(str(key), row) for key, row
                                            in self.subject_rows.get(subject_kind, [])])
            self._found_keys[(dataset, subject_kind)] = found
        return found

    def keys_removed(self, action: RemoveKeyed, removed: Counts, held: Counts) -> None:
        """One kind's items of a keyed dataset; a dataset several kinds' templates name
        adds them up (and only the sum is held to the baseline)."""
        name = action.dataset
        ds = self.policy.datasets[name]
        found = self._found_keys.pop((name, action.subject_kind), {})
        kept, erased_now = sum(held.values()), sum(removed.values())
        retained = sum(len(v) for v in found.values()) - kept if ds.erasure == "retain" else 0
        total = [a + b for a, b in zip(self._keyed.get(name, (0, 0, 0)),
                                       (erased_now, kept, retained), strict=True)]
        self._keyed[name] = (total[0], total[1], total[2])
        erased_now, kept, retained = total
        rows = max(erased_now + kept + retained, self._baseline(name))
        report = DatasetReport(rows=rows, erased=rows - kept - retained, retained=retained,
                               held=kept, action=ds.erasure, legal_basis=ds.legal_basis)
        self.outcome.datasets[name] = report
        self._step(name, report, erased_now)

    def pinned_held(self, dataset: str, holds: HoldScopes) -> Condition:
        """Every pinned row of a `referenced_by` dataset, while a subject hold may reach
        a subject of the workspace (whose address it is cannot be told)."""
        keys = tuple(self.pointed.get(dataset, ()))
        if keys and self._subjects_held(holds):
            return In(self.builder.keys[dataset], keys)
        return FALSE

    def owners_of(self, dataset: str, holds: HoldScopes) -> dict[str, str]:
        """The workspace's archived rows, unless a subject hold may reach some of them."""
        if self._subjects_held(holds):
            return {}  # what stays is counted held (`erased`)
        return {self.workspace: self.workspace}

    def begin(self, action: EraseRows) -> None:
        if action.action != "delete":
            self._found_before = self.count(action.dataset, action.where)

    def erased(self, action: EraseRows, result: Erased) -> None:
        """The workspace's rows of one dataset, reported; never fewer than its baseline
        (an earlier, interrupted run's deletions are no longer there to count)."""
        name, where = action.dataset, action.where
        ds = self.policy.datasets[name]
        erased_now = result.swept.rows if result.swept is not None else 0
        held = self.count(name, all_of(where, result.held)) if result.held != FALSE else 0
        if result.kept != FALSE:
            held += self.count(name, all_of(result.kept, negate(result.held)))
        retained = 0
        basis = ds.legal_basis
        if action.action == "delete":
            if action.referenced != FALSE:
                retained = self.count(name, all_of(where, action.referenced,
                                                   negate(result.held)))
                if retained:
                    basis = "referenced by rows the policy retains, through " + "; ".join(
                        why for why, _ in action.blockers)
            erased_now += sum(result.archived.values())
            if action.archive_column is not None:  # archived rows still there: a hold's
                held += self._archived(name, action.archive_column)
            found = erased_now + held + retained
        else:
            found = self._found_before
        rows = max(found, self._baseline(name))
        report = DatasetReport(rows=rows, held=held, action=action.action,
                               legal_basis=basis if retained else ds.legal_basis)
        if action.action == "retain":
            report.retained = max(0, found - held)
            report.erased = rows - held - report.retained
        else:
            report.retained, report.erased = retained, rows - held - retained
        self.outcome.datasets[name] = report
        self._step(name, report, erased_now if action.action == "delete" else report.erased)

    # -- audit and notes ----------------------------------------------------------------
    def _step(self, name: str, report: DatasetReport, done: int) -> None:
        self._steps[name] = {"rows": report.rows, "done": done, "retained": report.retained,
                             "held": report.held, "action": report.action}

    def _audit(self) -> None:
        if self._steps:
            self.rt.audit.append(RequestErased(self.record.id, self._steps))

    def _update(self, values: dict[str, object]) -> None:
        store = requests_of(self.rt)
        store.update_each([(self.record.id, values)])
        self.outcome.record = store.get(self.record.id)

    def _stopped(self, now: datetime, exc: LetheError) -> None:
        """A store failed part way, or archive chunks cannot be read yet
        (`subjects.stopped`): the request stays in progress, saying where and why."""
        failed, note, error = stopped(exc, next((
            a.dataset for a in self.plan.actions
            if isinstance(a, EraseRows | RemoveKeyed) and a.dataset not in self._steps),
            "data keys"))
        self._steps[failed] = {"error": str(exc)}
        with suppress(LetheError):
            self._audit()
        self._update({"updated_at": now, "note": note})
        self.outcome.error = error

    def _note_held(self, now: datetime, held: list[str]) -> None:
        holds = [h for h in self.rt.control.holds() if h.scope_kind != "workspace"
                 or h.scope_value == self.workspace]
        names = ", ".join(f"hold {h.id} ({h.scope_kind})" for h in holds) or "a hold"
        kept = ", ".join([*(f"{n}: {self.outcome.datasets[n].held}" for n in held),
                          *self._unreached])
        self._update({"updated_at": now, "result": self.outcome.result(),
                      "note": f"held by {names}; kept: {kept}"})


def is_termination(rt: Runtime, record: RequestRecord) -> bool:
    """Does the request terminate a workspace (not erase a person)?"""
    return record.kind == "erasure" and record.subject_kind == TERMINATION \
        and TERMINATION not in rt.policy.subjects


__all__ = ["Termination", "is_termination", "open_termination", "terminate"]
