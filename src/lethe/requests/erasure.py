"""Erasure for one subject or for a thousand at once, through the same sweeps.

A group of subjects is erased dataset by dataset, children first: one selective sweep
per dataset covers every subject of the group, and each affected row is told apart by
its owner (the subject key itself, or the link column read back with RETURNING and
mapped up `belongs_to` to the subject). Per-subject counts, audit entries and
certificates come out the same as for a lone subject; a group of one is the
single-request path. Holds are re-read before every batch, and counted per subject
after each sweep, so a hold placed mid-run keeps its rows and keeps the request open.

Two phases, as for one subject: while the subject dataset has a recovery window the
subject rows are first soft-deleted; once it has passed, everything is erased.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from pathlib import Path

from lethe.audit.events import KeysShredded, RequestErased, RequestStep
from lethe.control.certificates import CertificateStore
from lethe.control.requests import SCRUBBED
from lethe.control.tx import transaction
from lethe.engine.executor import Executor, SweepRows
from lethe.engine.plan import builder_for
from lethe.engine.steps import StepBuilder, anonymize_effect, identifying
from lethe.engine.subjects import SubjectReach
from lethe.errors import LetheError
from lethe.holds import HoldScopes
from lethe.policy.model import template_fields
from lethe.requests.records import (
    DatasetReport,
    RequestOutcome,
    requests_of,
    transition_many,
)
from lethe.requests.subjects import Owner, Subject, certify, groupable, held_note
from lethe.runtime import Runtime
from lethe.stores.base import (
    FALSE,
    Condition,
    Delete,
    Effect,
    In,
    IsNull,
    SetColumns,
    Value,
    all_of,
    any_of,
    negate,
)

Counts = dict[str, int]  # subject key (as text) -> rows


class Group:
    """Subjects of one kind erased together."""

    def __init__(self, rt: Runtime, builder: StepBuilder, subject_kind: str,
                 subjects: Sequence[Subject], batch_size: int) -> None:
        self.rt, self.builder, self.batch_size = rt, builder, batch_size
        self.policy = rt.policy
        self.subject = self.policy.subjects[subject_kind].dataset
        self.subject_kind = subject_kind
        self.subjects = list(subjects)
        self.single = len(self.subjects) == 1
        keys = [s.key for s in self.subjects if s.key is not None]
        self.keys = tuple(keys)
        self.where: dict[str, Condition] = {}
        self._last_held: tuple[str, bool, Condition] | None = None
        self.owners: dict[str, Owner] = {}
        self._discover()
        self.reach = SubjectReach(rt, builder, subject_kind)
        self.executor = Executor(rt, builder)
        self.keyed = self.reach.keyed
        self._found_keys: dict[str, dict[str, list[str]]] = {}
        self._keyed_held: set[str] = set()  # subjects some of whose keys a hold keeps
        # request id -> dataset -> what this run did: one audit entry each at the end
        self._steps: dict[int, dict[str, dict[str, int | str]]] = {
            s.record.id: {} for s in self.subjects}

    # -- discovery ----------------------------------------------------------------------
    def _discover(self) -> None:
        """Each dataset's rows of the group (children first), and, for a group of more
        than one, how to attribute them; parent rows are read before anything goes."""
        subject_key = self.builder.keys[self.subject]
        own: Condition = In(subject_key, self.keys) if self.keys else FALSE
        identity = {str(k): str(k) for k in self.keys}
        found: dict[str, Condition] = {self.subject: own}
        owners = {self.subject: Owner(subject_key, identity)}
        order = self.rt.catalog.graph.order
        # a lone subject needs its rows told apart only to find them in archive chunks
        archived = any(r.action == "archive" for d in self.policy.datasets.values()
                       for r in d.retention)
        for name in reversed([n for n in order if n in self.builder.keys]):
            if name == self.subject:
                continue
            ds = self.policy.datasets[name]
            parents = [(p, c) for p, c in ds.belongs_to.items() if p in found]
            if len(parents) == 1 and parents[0][0] == self.subject:
                found[name] = In(parents[0][1], self.keys) if self.keys else FALSE
            else:
                linked = self.builder.linked_to(name, self.subject, own)
                if linked == FALSE:
                    continue
                found[name] = linked
            if len(parents) == 1 and (not self.single or archived):
                owners[name] = self._owner(parents[0][0], parents[0][1], found, owners)
        self.where = {n: found[n] for n in order if n in found}
        self.owners = owners

    def _owner(self, parent: str, column: str, found: Mapping[str, Condition],
               owners: Mapping[str, Owner]) -> Owner:
        if parent == self.subject:
            return Owner(column, owners[parent].of)
        above = owners[parent]
        pds = self.policy.datasets[parent]
        pairs = self.rt.catalog.store_of(parent).select(
            pds.table or "", [self.builder.keys[parent], above.column], found[parent])
        of = {str(key): above.of[str(up)] for key, up in pairs if str(up) in above.of}
        return Owner(column, of)

    # -- counting and sweeping, per subject ---------------------------------------------
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

    def sweep(self, name: str, narrowed: Condition, effect: Effect, *,
              deletes: bool) -> Counts:
        """Sweep the group's rows of one dataset; holds are re-read before every batch."""
        if narrowed == FALSE:
            return {}
        tally = None if self.single else self.owners[name].column
        # durable=False: one log flush per store at the end (`_flush`), before any of it
        # is audited or certified, instead of one per batch
        swept = self.executor.sweep(SweepRows(name, narrowed, effect, deletes, tally=tally,
                                              selective=True, durable=False), self.batch_size)
        self._last_held = (name, deletes, swept.held)
        if self.single:
            return {self.subjects[0].mark: swept.stats.rows} if swept.stats.rows else {}
        return self._attribute(name, swept.stats.tallies)

    def held(self, name: str, *, deletes: bool,
             holds: HoldScopes | None = None) -> tuple[Condition, Counts]:
        """Rows a hold keeps: the condition, and the group's count. Under `holds` when
        given (read inside the unit of work about to act); right after a sweep of the
        dataset, the holds its last batch read (a hold placed since then came after the
        rows it would have kept were gone); otherwise read now."""
        last = self._last_held
        if holds is not None:
            held = holds.held(name, cascading=deletes)
        elif last is not None and last[:2] == (name, deletes):
            held = last[2]
        else:
            held = self.executor.holds().held(name, cascading=deletes)
        return held, ({} if held == FALSE else self.count(name, all_of(self.where[name], held)))

    # -- phase 1: soft-delete -----------------------------------------------------------
    def soft_delete(self, now: datetime, window: datetime) -> None:
        soft = self.policy.datasets[self.subject].soft_delete
        assert soft is not None
        done = self.sweep(self.subject, all_of(self.where[self.subject], IsNull(soft.column)),
                          SetColumns(((soft.column, now),)), deletes=False)
        self._flush()
        until = (now + (now - window)).isoformat()
        note = f"soft-deleted; recoverable until {until}"
        self.rt.audit.append_many([
            RequestStep(s.record.id, self.subject, "soft_deleted", done.get(s.mark, 0),
                        done.get(s.mark, 0), 0, 0, "soft-delete") for s in self.subjects])
        requests_of(self.rt).update_each([
            (s.record.id, {"soft_deleted_at": now, "updated_at": now, "note": note})
            for s in self.subjects])
        records = requests_of(self.rt).get_many([s.record.id for s in self.subjects])
        for s, record in zip(self.subjects, records, strict=True):
            s.outcome = RequestOutcome(record, {self.subject: DatasetReport(
                rows=done.get(s.mark, 0), action="soft-delete")})

    # -- phase 2: erase -----------------------------------------------------------------
    def erase(self, out_dir: Path | None) -> None:
        """Erase, then certify: every certificate goes to the control store, and to
        files in `out_dir` unless it is None (bulk runs: thousands of files cost more
        than the erasure itself; `lethe certificate export` writes them on demand)."""
        now = self.rt.clock.now()
        store = requests_of(self.rt)
        baselines, fresh = self._baselines()
        self._shred_first()
        try:
            for name in self.keyed:  # before the subject rows their templates are filled from
                self._erase_keyed(name, baselines)
            for name, where in self.where.items():
                self._erase_dataset(name, where, baselines, fresh)
        except BaseException:
            with suppress(LetheError):  # audit what was done; the first error is the one told
                self._flush()
                self._audit_steps()
            raise
        self._flush()
        self._audit_steps()
        held = [s for s in self.subjects
                if any(r.held for r in s.outcome.datasets.values())]
        if held:
            holds = list(self.rt.control.holds())
            store.update_each([
                (s.record.id, {"updated_at": now, "result": s.outcome.result(),
                               "note": held_note(s, holds)}) for s in held])
            for s, record in zip(held, store.get_many([s.record.id for s in held]),
                                 strict=True):
                s.outcome.record = record
        done = [s for s in self.subjects if s not in held]
        if not done:
            return
        documents, certificates = certify(self.rt, done, now, out_dir)
        # Completion is one transaction: the certificates kept, the requests completed
        # (and audited), the baselines cleared — all of it, or none and a rerun redoes it.
        with transaction(self.rt.control.engine, "completing erasure requests") as conn:
            CertificateStore(self.rt.control.engine).put_many(documents, conn=conn)
            records = transition_many(self.rt, [
                (s.record, ["completed"],
                 {"completed_at": now, "identities": SCRUBBED, "result": s.outcome.result(),
                  "certificate_path": str(path) if path else None})
                for s, path in zip(done, certificates, strict=True)], conn=conn)
            store.clear_baselines([s.record.id for s in done], conn=conn)
        for s, record, path in zip(done, records, certificates, strict=True):
            s.outcome.record, s.outcome.certificate = record, path
            s.outcome.certified = True

    def _baselines(self) -> tuple[dict[int, Counts], bool]:
        """Rows each dataset held for each subject when its erasure began: counted and
        stored before the first row goes, read back by every later run of the request.
        Also: were they all counted just now (so they are the current counts too)?"""
        store = requests_of(self.rt)
        baselines = store.baselines([s.record.id for s in self.subjects])
        missing = [s for s in self.subjects if s.record.id not in baselines]
        fresh = len(missing) == len(self.subjects)
        if missing:
            counts = self._count_all()
            for name in self.keyed:  # the keys found now are the ones erased next
                self._found_keys[name] = self._keys_of(name)
                counts[name] = {k: len(v) for k, v in self._found_keys[name].items()}
            counted = {s.record.id: {name: found.get(s.mark, 0)
                                     for name, found in counts.items()} for s in missing}
            store.set_baselines(counted)
            baselines.update(counted)
        return baselines, fresh

    def _erase_dataset(self, name: str, where: Condition, baselines: Mapping[int, Counts],
                       fresh: bool) -> None:
        """Each subject's rows of one dataset, by the dataset's `erasure`. A subject's rows
        are at least its baseline: rows an earlier, interrupted run of the request erased
        are no longer there to count, but its certificate must account for them."""
        ds = self.policy.datasets[name]
        action = "delete" if name == self.subject else ds.erasure
        deletes = action == "delete"
        erased_now: Counts = {}
        retained: Counts = {}
        basis = ds.legal_basis
        if deletes:
            referenced = self.builder.referenced(name)
            keep = self._kept_for_keys() if name == self.subject else FALSE
            erased_now = self.sweep(name, all_of(where, negate(referenced), negate(keep)),
                                    Delete(), deletes=True)
            held_rows, held = self.held(name, deletes=True)
            if keep != FALSE:  # the subject row stays while its held keys need it
                for mark, rows in self.count(name, all_of(keep, negate(held_rows))).items():
                    held[mark] = held.get(mark, 0) + rows
            if referenced != FALSE:
                kept = all_of(where, referenced)
                retained = self.count(name, all_of(kept, negate(held_rows)))
                if any(retained.values()):
                    basis = "referenced by rows the policy retains"
                    if ds.anonymized_fields:  # the row must stay; its personal fields need not
                        self.sweep(name, all_of(kept, identifying(ds)), anonymize_effect(ds),
                                   deletes=False)
                        basis += "; personal fields anonymized"
            for mark, rows in self._erase_archived(name).items():  # rows archived earlier
                erased_now[mark] = erased_now.get(mark, 0) + rows
            found = {k: erased_now.get(k, 0) + held.get(k, 0) + retained.get(k, 0)
                     for k in {*erased_now, *held, *retained}}
        else:
            # before anonymizing cuts the link; nothing has touched these rows since
            # fresh baselines counted them
            found = {s.mark: baselines[s.record.id].get(name, 0) for s in self.subjects} \
                if fresh else self.count(name, where)
            if action == "anonymize":
                self._anonymize(name, where)
            _, held = self.held(name, deletes=False)
        for s in self.subjects:
            k = s.mark
            rows = max(found.get(k, 0), baselines.get(s.record.id, {}).get(name, 0))
            staying = held.get(k, 0) + retained.get(k, 0)
            report = DatasetReport(rows=rows, held=held.get(k, 0), action=action,
                                   legal_basis=basis if retained.get(k, 0) else ds.legal_basis)
            # retain keeps the rest; delete, anonymize and shred erased it (rows already
            # anonymized, and rows whose fields died with the key, included)
            if action == "retain":
                report.retained = rows - staying
            else:
                report.retained, report.erased = retained.get(k, 0), rows - staying
            s.outcome.datasets[name] = report
            self._step(s, name, report, erased_now.get(k, 0) if deletes else report.erased)

    def _flush(self) -> None:
        """Make the sweeps' commits durable (they did not wait for the log): nothing is
        audited or certified that a database crash could still undo."""
        for name in {self.policy.datasets[n].store: n for n in self.where}.values():
            self.rt.catalog.store_of(name).flush()  # once per store

    def _audit_steps(self) -> None:
        """One `request.erased` per request: what this run did to every dataset. (A run
        killed before it writes them is accounted for by the next: its entry's `rows`
        come from the baselines, so rows minus done, retained and held is what went
        before that run.)"""
        self.rt.audit.append_many([RequestErased(s.record.id, self._steps[s.record.id])
                                   for s in self.subjects if self._steps[s.record.id]])

    def _step(self, s: Subject, name: str, report: DatasetReport, done: int) -> None:
        """Remember what this run did to a dataset for the subject's `request.erased`."""
        self._steps[s.record.id][name] = {
            "rows": report.rows, "done": done, "retained": report.retained,
            "held": report.held, "action": report.action}

    def _erase_archived(self, name: str) -> Counts:
        """The subjects' rows of `name` that an `archive` rule already moved to an object
        store: taken out of the chunks too. A row names its subject by the subject key
        (the subject dataset), its link to the subject, or (a group of several) the
        link to a parent already mapped to subjects."""
        ds = self.policy.datasets[name]
        targets = {r.to for r in ds.retention if r.action == "archive" and r.to}
        if not targets or not self.keys:
            return {}
        if name == self.subject:
            column, owners = self.builder.keys[name], {str(k): str(k) for k in self.keys}
        elif ds.belongs_to.get(self.subject) is not None:
            column, owners = ds.belongs_to[self.subject], {str(k): str(k) for k in self.keys}
        elif name in self.owners:
            column, owners = self.owners[name].column, dict(self.owners[name].of)
        else:
            raise LetheError("archived rows of this dataset cannot be traced to the subject "
                             "(declare belongs_to the subject dataset)",
                             path=f"datasets.{name}")
        # holds win in archives too: a held subject's rows stay, and so do the rows of a
        # held workspace or of a dataset under hold (read fresh, under the gate, until
        # the chunks are rewritten)
        def free(holds: HoldScopes) -> dict[str, str]:
            _, held_subjects = self.held(self.subject, deletes=True, holds=holds)
            return {value: mark for value, mark in owners.items()
                    if not held_subjects.get(mark)}

        return self.executor.remove_archived(self.reach, name, column, free)

    def _kept_for_keys(self) -> Condition:
        """Subject rows to keep because a hold keeps some of their Redis keys or objects:
        the row's columns are how a later run finds those keys again."""
        marks = self._keyed_held
        kept = tuple(s.key for s in self.subjects if s.mark in marks and s.key is not None)
        return In(self.builder.keys[self.subject], kept) if kept else FALSE

    def _keys_of(self, name: str) -> dict[str, list[str]]:
        """Each subject's keys in a keyed dataset, through its `per_subject` template."""
        columns = list(template_fields(
            self.policy.datasets[name].per_subject[self.subject_kind]))
        key = self.builder.keys[self.subject]
        rows = [] if not self.keys else self.rt.catalog.store_of(self.subject).select(
            self._table(self.subject), [key, *columns], In(key, self.keys))
        return self.reach.keys_of(name, [(str(row[0]), dict(zip(columns, row[1:], strict=True)))
                                         for row in rows])

    def _erase_keyed(self, name: str, baselines: Mapping[int, Counts]) -> None:
        """A subject's Redis keys or objects: removed (`erasure: delete`) or kept
        (`retain`); held ones are left alone."""
        ds = self.policy.datasets[name]
        found = self._found_keys.pop(name, None) or self._keys_of(name)
        removed, kept = self.executor.remove_keys(
            self.reach, name, {s.mark: found.get(s.mark, []) for s in self.subjects},
            delete=ds.erasure == "delete")
        for s in self.subjects:
            keys = found.get(s.mark, [])
            held = kept.get(s.mark, 0)
            if held:
                self._keyed_held.add(s.mark)
            erased_now = removed.get(s.mark, 0)
            retained = len(keys) - held if ds.erasure == "retain" else 0
            rows = max(erased_now + held + retained,
                       baselines.get(s.record.id, {}).get(name, 0))
            report = DatasetReport(rows=rows, erased=rows - held - retained, retained=retained,
                                   held=held, action=ds.erasure, legal_basis=ds.legal_basis)
            s.outcome.datasets[name] = report
            self._step(s, name, report, erased_now)

    def _anonymize(self, name: str, where: Condition) -> None:
        """Scrub every linked row, and cut its link towards the subject: including rows
        retention already anonymized, or deleting the subject would reach them."""
        ds = self.policy.datasets[name]
        link = next((c for parent, c in ds.belongs_to.items()
                     if parent == self.subject or parent in self.where), None)
        detach = link if link and self.builder.nullable.get((name, link), False) else None
        todo = identifying(ds) if detach is None else \
            any_of(identifying(ds), negate(IsNull(detach)))
        self.sweep(name, all_of(where, todo), anonymize_effect(ds, detach), deletes=False)

    def _shred_first(self) -> None:
        """Destroy each subject's data key before any row goes, so a crash in between can
        never leave the key alive with no row left to find it by; never while any of the
        subject's rows is held."""
        if not self.keys or not any(self.policy.datasets[n].erasure == "shred"
                                    for n in self.where):
            return

        def unheld(holds: HoldScopes) -> list[Value]:
            held: set[str] = set()
            for name in self.where:
                held.update(k for k, n in self.held(name, deletes=True, holds=holds)[1].items()
                            if n)
            freed.extend(s for s in self.subjects if s.key is not None and s.mark not in held)
            return [s.key for s in freed if s.key is not None]

        freed: list[Subject] = []
        destroyed = {str(key) for key in self.executor.shred(self.reach, unheld)}
        self.rt.audit.append_many([
            KeysShredded(f"request:{s.record.id}", self.subject_kind, int(s.mark in destroyed))
            for s in freed])


def erase_subjects(rt: Runtime, subject_kind: str, subjects: Sequence[Subject],
                   out_dir: Path | None, batch_size: int) -> None:
    """Run the next phase of erasure for subjects whose requests are in progress; each
    subject's `outcome` says what happened."""
    now = rt.clock.now()
    builder = builder_for(rt, now)
    subject = rt.policy.subjects[subject_kind].dataset
    soft = rt.policy.datasets[subject].soft_delete
    window = soft.recover_for.before(now) if soft is not None else None
    first: list[Subject] = []
    ready: list[Subject] = []
    for s in subjects:
        deleted_at = s.record.soft_deleted_at
        if soft is not None and window is not None and soft.recover_for.amount \
                and deleted_at is None:
            first.append(s)  # phase 1: recoverable for `recover_for`
        elif deleted_at is not None and window is not None and deleted_at > window:
            continue  # still inside the recovery window: nothing more yet
        else:
            ready.append(s)
    if first:
        assert window is not None
        Group(rt, builder, subject_kind, first, batch_size).soft_delete(now, window)
    if not ready:
        return
    order = [n for n in rt.catalog.graph.order if n in builder.keys]
    if len(ready) > 1 and not groupable(rt.policy, order, subject):
        for s in ready:
            Group(rt, builder, subject_kind, [s], batch_size).erase(out_dir)
        return
    Group(rt, builder, subject_kind, ready, batch_size).erase(out_dir)


__all__ = ["Subject", "erase_subjects", "groupable", "held_note"]
