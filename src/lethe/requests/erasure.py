"""Erasure for one subject or for a thousand at once, through the same sweeps.

A group is erased dataset by dataset, children first: one selective sweep per dataset
covers every subject of the group, each row told apart by its owner (the subject key, or
the link column read back with RETURNING and mapped up `belongs_to`). Per-subject counts,
audit entries and certificates are as for a lone subject. Holds are read in every unit of
work (a batch; all of a small lone erasure) and counted per subject after each sweep: a
hold placed mid-run keeps its rows and the request open.

Two phases, as for one subject: while the subject dataset has a recovery window the
subject rows are first soft-deleted; once it has passed, everything is erased.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from functools import partial
from pathlib import Path

from lethe.audit.events import KeysShredded, RequestStep
from lethe.control.tx import transaction
from lethe.engine.erasure_plan import (
    Erased,
    EraseRows,
    Owner,
    RemoveKeyed,
    build_erasure_plan,
    plan_owners,
)
from lethe.engine.executor import Executor, SweepRows
from lethe.engine.steps import StepBuilder, not_soft_deleted, soft_delete_effect
from lethe.engine.subjects import SubjectReach, archived_rows
from lethe.engine.sweep import SweepStats
from lethe.errors import LetheError
from lethe.holds import HoldScopes
from lethe.policy.model import template_fields
from lethe.requests.group_records import GroupRecords
from lethe.requests.pointers import Pointers, pinned_held, pointed_now, pointing_datasets
from lethe.requests.records import (
    DatasetReport,
    RequestOutcome,
    requests_of,
)
from lethe.requests.subjects import (
    Later,
    Subject,
    certify_and_complete,
    groupable,
    held_note,
    start,
    started,
    stopped,
)
from lethe.runtime import Runtime
from lethe.stores.base import (
    FALSE,
    Condition,
    In,
    Value,
    all_of,
    negate,
)

Counts = dict[str, int]  # subject key (as text) -> rows


class Group(GroupRecords):
    """Subjects of one kind erased together: the request's side of the erasure plan
    (engine.erasure_plan.Tally) — whose each row is, baselines, reports, audit entries
    and certificates. The executor carries the plan out."""

    def __init__(self, rt: Runtime, builder: StepBuilder, subject_kind: str,
                 subjects: Sequence[Subject], batch_size: int) -> None:
        self.rt, self.builder, self.batch_size = rt, builder, batch_size
        self.policy = rt.policy
        self.subject = self.policy.subjects[subject_kind].dataset
        self.subject_kind = subject_kind
        self.subjects = list(subjects)
        self.single = len(self.subjects) == 1
        self.keys = tuple(s.key for s in self.subjects if s.key is not None)
        self.plan = build_erasure_plan(rt, builder, subject_kind, self.keys)
        self.where = self.plan.where
        self.owners = self._owners()
        # request id -> `referenced_by` dataset -> keys of the rows its subject points at
        self._pointers: Pointers = {}
        if any(self.policy.datasets[n].referenced_by for n in builder.keys):
            self._point()
        self.reach = SubjectReach(rt, builder, subject_kind)
        self.executor = Executor(rt, builder)
        self.keyed = self.reach.keyed
        self._found_keys: dict[str, dict[str, list[str]]] = {}
        self._baselines_now: dict[int, Counts] = {}
        self._fresh = False
        self._begun = False
        # dataset -> each subject's rows as `begin` found them (several datasets may be
        # begun before the first is told: a run of them goes as one statement)
        self._found_before: dict[str, Counts] = {}
        self._freed: list[Subject] = []
        # request id -> dataset -> what this run did: one audit entry each at the end
        self._steps: dict[int, dict[str, dict[str, int | str]]] = {
            s.record.id: {} for s in self.subjects}

    # -- attribution --------------------------------------------------------------------
    def _owners(self) -> dict[str, Owner]:
        """How to tell each dataset's rows apart by subject (a group of more than one, or
        archived rows to find); parent rows are read before anything goes."""
        if self.single and not self._archived():
            identity = {str(k): str(k) for k in self.keys}
            return {self.subject: Owner(self.builder.keys[self.subject], identity)}
        return plan_owners(self.rt, self.builder, self.plan)

    def _point(self) -> None:
        """Pin the rows the subjects point at to their keys (lethe.requests.pointers):
        kept from the run that began the erasure, else read now; their owner is the
        subject whose rows point at them."""
        pointing = pointing_datasets(self.rt, self.builder.keys)
        self._pointers = requests_of(self.rt).pointers(self._stored())
        fresh = [s for s in self.subjects if s.record.id not in self._pointers]
        for s in fresh:
            self._pointers[s.record.id] = {}
        for name in pointing:
            read = pointed_now(self.rt, name, self.where, self.owners, self.subjects,
                               self.single) if fresh else {}
            for s in fresh:
                self._pointers[s.record.id][name] = sorted(read.get(s.mark, set()))
        pointed = {name: tuple(dict.fromkeys(
            key for s in self.subjects for key in self._pointers[s.record.id].get(name, ())))
            for name in pointing}
        self.plan = build_erasure_plan(self.rt, self.builder, self.subject_kind, self.keys,
                                       pointed)
        self.where = self.plan.where
        for name in pointing:
            self.owners[name] = Owner(self.builder.keys[name], {
                key: s.mark for s in self.subjects
                for key in self._pointers[s.record.id].get(name, ())})

    def _table(self, name: str) -> str:
        return self.policy.datasets[name].table or ""

    def _attribute(self, name: str, by_value: Mapping[Value, int]) -> Counts:
        owner = self.owners[name]
        counts: Counts = {}
        for value, rows in by_value.items():
            mark = owner.of.get(str(value))
            if mark is not None:
                counts[mark] = counts.get(mark, 0) + rows
        return counts

    def _swept(self, name: str, stats: SweepStats | None) -> Counts:
        if stats is None:
            return {}
        if self.single:
            return {self.subjects[0].mark: stats.rows} if stats.rows else {}
        return self._attribute(name, stats.tallies)

    def count(self, name: str, where: Condition) -> Counts:
        if where == FALSE:
            return {}
        store = self.rt.catalog.store_of(name)
        if self.single:
            rows = store.count(self._table(name), where)
            return {self.subjects[0].mark: rows} if rows else {}
        return self._attribute(name, store.count_by(self._table(name),
                                                    self.owners[name].column, where))

    def _count_all(self) -> dict[str, Counts]:
        """Every dataset's rows of the group: per subject, or for a lone subject in one
        round trip per store (this is on the path of every single request)."""
        if not self.single:
            return {name: self.count(name, where) for name, where in self.where.items()}
        by_store: dict[str, list[str]] = {}
        for name, where in self.where.items():
            if where != FALSE:
                by_store.setdefault(self.policy.datasets[name].store, []).append(name)
        counts: dict[str, Counts] = {name: {} for name in self.where}
        for names in by_store.values():
            store = self.rt.catalog.store_of(names[0])
            found = store.count_each([(self._table(n), self.where[n]) for n in names])
            for name, rows in zip(names, found, strict=True):
                counts[name] = {self.subjects[0].mark: rows} if rows else {}
        return counts

    def _held(self, name: str, held: Condition) -> Counts:
        """The group's rows of `name` this hold condition keeps."""
        return {} if held == FALSE else self.count(name, all_of(self.where[name], held))

    # -- phase 1: soft-delete -----------------------------------------------------------
    def soft_delete(self, now: datetime, window: datetime) -> None:
        """Phase 1: the subject rows soft-deleted, recoverable until `now` plus the
        window. A held subject row is left alone and its request says held (no window
        starts): the window starts when a later run really soft-deletes it."""
        soft = self.policy.datasets[self.subject].soft_delete
        assert soft is not None
        start(self.rt, self.subjects)
        swept = self.executor.sweep(SweepRows(
            self.subject, all_of(self.where[self.subject], not_soft_deleted(soft)),
            soft_delete_effect(soft, now), False, tally=self.column(self.subject),
            selective=True), self.batch_size)
        done = self._swept(self.subject, swept.stats)
        held = self._held(self.subject, all_of(not_soft_deleted(soft), swept.held))
        kept = [s for s in self.subjects if held.get(s.mark) and not done.get(s.mark)]
        for s in kept:
            s.outcome = RequestOutcome(s.record, {self.subject: DatasetReport(
                rows=held[s.mark], held=held[s.mark], action="soft-delete")})
        if kept:
            self._note_held(kept, lambda s: {"updated_at": now})
        soft_deleted = [s for s in self.subjects if s not in kept]
        if not soft_deleted:
            return
        until = (now + (now - window)).isoformat()
        note = f"soft-deleted; recoverable until {until}"
        self.rt.audit.append_many([
            RequestStep(s.record.id, self.subject, "soft_deleted", done.get(s.mark, 0),
                        done.get(s.mark, 0), 0, 0, "soft-delete") for s in soft_deleted])
        records = self._update(soft_deleted, lambda s: {
            "soft_deleted_at": now, "updated_at": now, "note": note})
        for s, record in zip(soft_deleted, records, strict=True):
            s.outcome = RequestOutcome(record, {self.subject: DatasetReport(
                rows=done.get(s.mark, 0), action="soft-delete")})

    # -- phase 2: erase -----------------------------------------------------------------
    def erase(self, out_dir: Path | None, later: Later | None = None) -> None:
        """Erase, then certify: every certificate goes to the control store, and to
        files in `out_dir` unless it is None (bulk runs: thousands of files cost more
        than the erasure itself; `lethe certificate export` writes them on demand).
        `later`: where the certification goes instead of running now (`Certifications`)."""
        now = self.rt.clock.now()
        try:
            self.begin_erasure()
            self.executor.erase(self.plan, self, self.batch_size, one_turn=self._small())
        except LetheError as exc:
            self._stopped(now, exc)
            return
        except BaseException:
            with suppress(LetheError):  # audit what was done; the first error is the one told
                self._audit_steps()
            raise
        held = [s for s in self.subjects
                if any(r.held for r in s.outcome.datasets.values())]
        done = [s for s in self.subjects if s not in held]
        if held or not done:  # this run's entries first, then the held requests' notes
            self._audit_steps()
            if held:
                self._note_held(held, lambda s: {"updated_at": now,
                                                 "result": s.outcome.result()})
            if not done:
                return
        # else this run's entries are written in the certificates' transaction
        certify = partial(certify_and_complete, self.rt, done, now, out_dir,
                          first=None if held else self._audit_steps)
        certify() if later is None else later(certify)

    def begin_erasure(self) -> None:
        """The baselines counted and stored (or read back), the requests moved into
        in progress with them: once, before the first row goes. A bulk run begins the
        next group on another thread while this one erases (`phases.Erasure.begin`); `erase`
        begins whatever was not."""
        if not self._begun:
            self._baselines_now, self._fresh = self._baselines()
            self._begun = True

    def _small(self) -> bool:
        """One unit of work (Executor.erase): a lone subject, rows (just counted) within a
        batch, no keys, objects or archived rows (those go a page or chunk at a time)."""
        return self.single and self._fresh and not self.keyed and not self._archived() \
            and sum(sum(c.values()) for c in self._baselines_now.values()) <= self.batch_size

    def _archived(self) -> bool:  # does the plan take rows out of archives?
        return any(isinstance(a, EraseRows) and a.archive_column is not None
                   for a in self.plan.actions)

    def _baselines(self) -> tuple[dict[int, Counts], bool]:
        """Rows each dataset held for each subject when its erasure began: counted and
        stored before the first row goes, read back by every later run of the request.
        Also: were they all counted just now (so they are the current counts too)?"""
        store = requests_of(self.rt)
        baselines = store.baselines(self._stored())
        missing = [s for s in self.subjects if s.record.id not in baselines]
        fresh = len(missing) == len(self.subjects)
        if missing:
            counts = self._count_all()
            for action in self.plan.actions:  # and the rows archived out of them
                if isinstance(action, EraseRows) and action.archive_column is not None:
                    for mark, rows in self._in_archives(action, settled=True).items():
                        counts[action.dataset][mark] = \
                            counts[action.dataset].get(mark, 0) + rows
            for name in self.keyed:  # the keys found now are the ones erased next
                self._found_keys[name] = self._keys_of(name)
                counts[name] = {k: len(v) for k, v in self._found_keys[name].items()}
            counted = {s.record.id: {name: found.get(s.mark, 0)
                                     for name, found in counts.items()} for s in missing}
            with transaction(self.rt.control.engine, "beginning erasures") as conn:
                moves = start(self.rt, self.subjects, conn)
                store.set_baselines(counted, {s.record.id: self._pointers[s.record.id]
                                              for s in missing if s.record.id in self._pointers},
                                    conn=conn)
            started(moves)
            baselines.update(counted)
        start(self.rt, self.subjects)  # (none missing: any still moving go alone)
        return baselines, fresh

    def _stored(self) -> list[int]:
        """The requests that may have baselines and pointers stored by an earlier run."""
        return [s.record.id for s in self.subjects if not s.begun_now]

    def _in_archives(self, action: EraseRows, *, settled: bool = False) -> Counts:
        """Each subject's rows in the dataset's archives now, held or not (`settled`:
        waiting for chunks an interrupted archive run left, as baselines must)."""
        assert action.archive_column is not None
        return archived_rows(self.rt, action.dataset, action.archive_column,
                             self.owners[action.dataset].of, settled=settled)

    # -- the Tally the executor reports to ----------------------------------------------
    def column(self, dataset: str) -> str | None:
        return None if self.single else self.owners[dataset].column

    def unheld(self, holds: HoldScopes, subject_kind: str) -> list[Value]:
        """Subjects none of whose rows a hold keeps: their data keys may go."""
        held: set[str] = set()
        for name in self.where:
            held.update(k for k, n in self._held(name, holds.held(name, cascading=True))
                        .items() if n)
        self._freed = [s for s in self.subjects if s.key is not None and s.mark not in held]
        return [s.key for s in self._freed if s.key is not None]

    def shredded(self, destroyed: Sequence[Value], subject_kind: str) -> None:
        gone = {str(key) for key in destroyed}
        self.rt.audit.append_many([
            KeysShredded(f"request:{s.record.id}", self.subject_kind, int(s.mark in gone))
            for s in self._freed])

    def keys_of(self, dataset: str, subject_kind: str) -> dict[str, list[str]]:
        found = self._found_keys.get(dataset) or self._keys_of(dataset)
        self._found_keys[dataset] = found
        return {s.mark: found.get(s.mark, []) for s in self.subjects}

    def _keys_of(self, name: str) -> dict[str, list[str]]:
        """Each subject's keys in a keyed dataset, through its `per_subject` template."""
        columns = list(template_fields(
            self.policy.datasets[name].per_subject[self.subject_kind]))
        key = self.builder.keys[self.subject]
        rows = [] if not self.keys else self.rt.catalog.store_of(self.subject).select(
            self._table(self.subject), [key, *columns], In(key, self.keys))
        return self.reach.keys_of(name, [(str(row[0]), dict(zip(columns, row[1:], strict=True)))
                                         for row in rows])

    def keys_removed(self, action: RemoveKeyed, removed: Counts, held: Counts) -> None:
        """A subject's Redis keys or objects: removed (`erasure: delete`) or kept
        (`retain`); held ones were left alone."""
        name = action.dataset
        ds = self.policy.datasets[name]
        found = self._found_keys.pop(name, {})
        for s in self.subjects:
            keys = found.get(s.mark, [])
            kept = held.get(s.mark, 0)
            erased_now = removed.get(s.mark, 0)
            retained = len(keys) - kept if ds.erasure == "retain" else 0
            rows = max(erased_now + kept + retained,
                       self._baselines_now.get(s.record.id, {}).get(name, 0))
            report = DatasetReport(rows=rows, erased=rows - kept - retained, retained=retained,
                                   held=kept, action=ds.erasure, legal_basis=ds.legal_basis)
            s.outcome.datasets[name] = report
            self._step(s, name, report, erased_now)

    def pinned_held(self, dataset: str, holds: HoldScopes) -> Condition:
        return pinned_held(self.builder.keys[dataset], self.subject_kind, dataset,
                           self.subjects, self._pointers, holds)

    def owners_of(self, dataset: str, holds: HoldScopes) -> dict[str, str]:
        """Archived rows' owners, held subjects left out (holds win in archives too: a
        held subject's rows stay, and so do those of a held workspace or dataset)."""
        held = self._held(self.subject, holds.held(self.subject, cascading=True))
        return {value: mark for value, mark in self.owners[dataset].of.items()
                if not held.get(mark)}

    def begin(self, action: EraseRows) -> None:
        """Before anonymizing cuts the link: the rows as they are. Nothing has touched
        them since fresh baselines counted them."""
        if action.action != "delete":
            name = action.dataset
            self._found_before[name] = {
                s.mark: self._baselines_now[s.record.id].get(name, 0)
                for s in self.subjects} if self._fresh else self.count(name, action.where)

    def erased(self, action: EraseRows, result: Erased) -> None:
        """Each subject's rows of one dataset, reported. A subject's rows are at least
        its baseline: rows an earlier, interrupted run of the request erased are no
        longer there to count, but its certificate must account for them."""
        name, where = action.dataset, action.where
        ds = self.policy.datasets[name]
        erased_now = self._swept(name, result.swept)
        held = self._held(name, result.held)
        retained: Counts = {}
        basis = ds.legal_basis
        if result.kept != FALSE:  # the subject row stays while its held keys need it; a
            # row it points at, while a hold names the subject
            for mark, rows in self.count(name, all_of(result.kept,
                                                      negate(result.held))).items():
                held[mark] = held.get(mark, 0) + rows
        if action.action == "delete":
            if action.referenced != FALSE:
                retained = self.count(name, all_of(where, action.referenced,
                                                   negate(result.held)))
                if any(retained.values()):
                    basis = "referenced by rows the policy retains, through " + \
                        self._keeping(name, all_of(where, negate(result.held)),
                                      action.blockers)
                    if action.scrub is not None:
                        basis += "; personal fields anonymized"
            for mark, rows in result.archived.items():  # rows archived earlier
                erased_now[mark] = erased_now.get(mark, 0) + rows
            if action.archive_column is not None:  # archived rows still there: held
                for mark, rows in self._in_archives(action).items():
                    held[mark] = held.get(mark, 0) + rows
            found = {k: erased_now.get(k, 0) + held.get(k, 0) + retained.get(k, 0)
                     for k in {*erased_now, *held, *retained}}
        else:
            found = self._found_before.pop(name)
        act, deleting = action.action, action.action == "delete"
        bases = {s.record.id: self._baselines_now.get(s.record.id, {}).get(name, 0)
                 for s in self.subjects}
        for s in self.subjects:  # (5,000 turns a bulk group: lookups kept few)
            k = s.mark
            found_k, held_k, retained_k = found.get(k, 0), held.get(k, 0), retained.get(k, 0)
            rows = max(found_k, bases[s.record.id])
            staying = held_k + retained_k
            report = DatasetReport(rows, 0, 0, held_k, act,
                                   basis if retained_k else ds.legal_basis)
            # retain keeps what is there now (rows retention deleted while a hold kept
            # the request open are gone: erased) — when they can still be found: once
            # the subject row is gone (an earlier run was killed after deleting it) its
            # rows are those the baseline counted. delete, anonymize and shred erased the
            # rest (rows already anonymized, and rows whose fields died with the key)
            if act == "retain":
                report.retained = rows - staying if s.key is None else \
                    max(0, found_k - staying)
                report.erased = rows - staying - report.retained
            else:
                report.retained, report.erased = retained_k, rows - staying
            s.outcome.datasets[name] = report
            self._step(s, name, report, erased_now.get(k, 0) if deleting else report.erased)

    def _keeping(self, name: str, rows: Condition,
                 blockers: Sequence[tuple[str, Condition]]) -> str:
        """The foreign keys that keep some of `rows` (named as plans name them)."""
        if len(blockers) == 1:
            return blockers[0][0]
        return "; ".join(why for why, where in blockers
                         if any(self.count(name, all_of(rows, where)).values()))

    # -- audit ---------------------------------------------------------------------------
    def _stopped(self, now: datetime, exc: LetheError) -> None:
        """A store failed part way (the error names no row value), or archive chunks
        cannot be read yet (`subjects.stopped`) — not a failure: the requests stay
        `in_progress`, saying where and why, with a `request.erased` entry of what this
        run did and the dataset that stopped it; running them again, once the cause is
        gone, carries on from there (the baselines keep the first counts)."""
        failed, note, error = stopped(exc, next((
            a.dataset for a in self.plan.actions if isinstance(a, EraseRows | RemoveKeyed)
            and not any(a.dataset in self._steps[s.record.id] for s in self.subjects)),
            "data keys"))
        for s in self.subjects:
            self._steps[s.record.id][failed] = {"error": str(exc)}
        with suppress(LetheError):  # the store's error is the one told
            start(self.rt, self.subjects)  # (stopped before its baselines were stored)
            self._audit_steps()
        for s, record in zip(self.subjects, self._update(
                self.subjects, lambda s: {"updated_at": now, "note": note}), strict=True):
            s.outcome.record, s.outcome.error = record, error


__all__ = ["Group", "Subject", "groupable", "held_note"]
