"""An erasure as a plan: what goes, in what order, for a group of subjects of one kind.

An erasure request builds this plan for its subjects and hands it to the executor
(`Executor.erase`), the same executor retention's plan runs on. The plan is data: each
dataset's rows of the subjects and the actions over them, children first, preceded by
the shred of the subjects' data keys (before any row goes, so a crash in between never
leaves a key alive with no row left to find it by) and by their Redis keys and objects
(before the subject rows their templates are filled from). What is per subject —
attribution, baselines, certificates — stays with the request (`Tally`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lethe.engine.steps import StepBuilder, anonymize_effect, identifying
from lethe.engine.subjects import Counts, keyed_datasets
from lethe.engine.sweep import SweepStats
from lethe.errors import LetheError
from lethe.holds import HoldScopes
from lethe.runtime import Runtime
from lethe.stores.base import FALSE, Condition, Effect, In, IsNull, Value, any_of, negate


@dataclass(frozen=True)
class ShredKeys:
    """Destroy the subjects' data keys (the ones no hold keeps)."""

    subject_kind: str


@dataclass(frozen=True)
class RemoveKeyed:
    """The subjects' Redis keys or objects of one dataset: removed (`delete`), or found
    and kept (`erasure: retain`). Held ones stay either way."""

    dataset: str
    delete: bool
    subject_kind: str = ""  # whose templates find the keys ("": the plan's subject kind)


@dataclass(frozen=True)
class EraseRows:
    """One dataset's rows of the subjects, by its `erasure` (the subject dataset: delete).

    delete: rows no foreign key outside any cascade still needs (`referenced`) go; those
    that must stay have their personal fields scrubbed (`scrub`, when the dataset names
    any), and rows an `archive` rule already moved out are taken out of the chunks
    (traced by `archive_column`). anonymize: the rows still identifying (or still linked)
    are scrubbed and cut loose. retain and shred: nothing is swept (shred's fields died
    with the key)."""

    dataset: str
    action: str
    where: Condition  # the subjects' rows of the dataset
    # (a foreign key outside any cascade, as plans name it; the rows it keeps)
    blockers: tuple[tuple[str, Condition], ...] = ()
    scrub: Effect | None = None
    todo: Condition = FALSE  # rows the scrub has still to reach
    archive_column: str | None = None

    @property
    def referenced(self) -> Condition:
        """Rows a foreign key outside any cascade keeps."""
        return any_of(*(where for _why, where in self.blockers))


ErasureAction = ShredKeys | RemoveKeyed | EraseRows


@dataclass(frozen=True)
class ErasurePlan:
    subject_kind: str
    subject: str  # the subject dataset
    keys: tuple[Value, ...]  # the subject rows' keys
    where: Mapping[str, Condition]  # each linked dataset's rows of the subjects, children first
    parents: Mapping[str, str] = field(default_factory=dict)  # dataset -> its one parent in `where`
    actions: tuple[ErasureAction, ...] = ()
    # other subject kinds whose subjects the plan erases too (a workspace's termination:
    # every kind kept per workspace): kind -> the keys of its subject rows
    others: Mapping[str, tuple[Value, ...]] = field(default_factory=dict)

    def kinds(self) -> dict[str, tuple[Value, ...]]:
        """Every subject kind the plan erases subjects of, with their keys."""
        mine = {self.subject_kind: self.keys} if self.subject else {}
        return mine | dict(self.others)

    def as_dict(self) -> dict[str, Any]:
        def row(action: ErasureAction) -> dict[str, Any]:
            if isinstance(action, ShredKeys):
                return {"action": "shred-keys", "subject_kind": action.subject_kind}
            if isinstance(action, RemoveKeyed):
                return {"action": "remove-keys" if action.delete else "keep-keys",
                        "dataset": action.dataset}
            return {"action": action.action, "dataset": action.dataset,
                    "archived": action.archive_column is not None}
        return {"subject_kind": self.subject_kind, "subjects": len(self.keys),
                "actions": [row(a) for a in self.actions]}


@dataclass(frozen=True)
class Erased:
    """What the executor did to one dataset's rows, for the tally to attribute."""

    swept: SweepStats | None  # the rows deleted (delete) or scrubbed (anonymize)
    held: Condition  # the holds that kept rows, as the last unit of work read them
    kept: Condition = FALSE  # subject rows kept because a hold keeps their keys
    archived: Counts = field(default_factory=dict)  # rows taken out of archives, per subject


class Tally(Protocol):
    """The request's side of an erasure: which subject each row, key and archived row
    belongs to, and what each action did to each subject."""

    def column(self, dataset: str) -> str | None:
        """The column that tells the dataset's rows apart by subject (None: one subject)."""

    def unheld(self, holds: HoldScopes, subject_kind: str) -> Sequence[Value]:
        """Keys of the subjects of this kind no hold keeps any row of, under these holds."""

    def shredded(self, destroyed: Sequence[Value], subject_kind: str) -> None: ...

    def keys_of(self, dataset: str, subject_kind: str) -> Mapping[str, list[str]]:
        """Each subject's keys or objects in a keyed dataset (marks: the subject keys as
        text)."""

    def keys_removed(self, action: RemoveKeyed, removed: Counts, held: Counts) -> None: ...

    def owners_of(self, dataset: str, holds: HoldScopes) -> Mapping[str, str]:
        """Values of the archive column -> subject, leaving out subjects a hold keeps."""

    def pinned_held(self, dataset: str, holds: HoldScopes) -> Condition:
        """Rows of a `referenced_by` dataset whose subject a subject hold names now: the
        rows pointing at them may be gone already, so the holds cannot reach them there."""

    def begin(self, action: EraseRows) -> None:
        """Called before anything of the dataset is touched."""

    def erased(self, action: EraseRows, result: Erased) -> None: ...


@dataclass(frozen=True)
class Owner:
    """How a dataset's rows name their subject: `column`'s value, mapped by `of`."""

    column: str
    of: Mapping[str, str]  # column value (as text) -> subject key (as text)


def plan_owners(rt: Runtime, builder: StepBuilder, plan: ErasurePlan) -> dict[str, Owner]:
    """For every dataset of the plan, how its rows (and rows archived out of it) name
    their subject: parent rows are read now, so call it before anything goes."""
    identity = {str(k): str(k) for k in plan.keys}
    owners = {plan.subject: Owner(builder.keys[plan.subject], identity)}
    for name in reversed(list(plan.where)):  # parents first
        parent = plan.parents.get(name)
        links = rt.policy.datasets[name].belongs_to
        if parent is not None:
            owners[name] = _owner(rt, builder, plan, parent, links[parent], owners)
        elif plan.subject in links:  # linked to the subject directly, and to others
            owners[name] = Owner(links[plan.subject], identity)
    return owners


def _owner(rt: Runtime, builder: StepBuilder, plan: ErasurePlan, parent: str, column: str,
           owners: Mapping[str, Owner]) -> Owner:
    if parent == plan.subject:
        return Owner(column, owners[parent].of)
    above = owners[parent]
    pairs = rt.catalog.store_of(parent).select(
        rt.policy.datasets[parent].table or "", [builder.keys[parent], above.column],
        plan.where[parent])
    return Owner(column, {str(key): above.of[str(up)] for key, up in pairs
                          if str(up) in above.of})


def build_erasure_plan(rt: Runtime, builder: StepBuilder, subject_kind: str,
                       keys: Sequence[Value],
                       pointed: Mapping[str, Sequence[Value]] | None = None) -> ErasurePlan:
    """The erasure of the subjects whose rows have these keys, over every store.

    Rows the subjects' rows point at (`referenced_by`: an address) come last, after the
    rows pointing at them are gone: by the keys in `pointed` (read before anything went,
    and kept with the baselines), else through the pointing rows as they are now."""
    policy = rt.policy
    subject = policy.subjects[subject_kind].dataset
    keys = tuple(keys)
    own: Condition = In(builder.keys[subject], keys) if keys else FALSE
    found: dict[str, Condition] = {subject: own}
    parents: dict[str, str] = {}
    order = [n for n in rt.catalog.graph.order if n in builder.keys]
    for name in reversed(order):  # parents first: a row is found through its parent's
        if name == subject:
            continue
        ds = policy.datasets[name]
        linked = [(p, c) for p, c in ds.belongs_to.items() if p in found]
        if len(linked) == 1 and linked[0][0] == subject:
            found[name] = In(linked[0][1], keys) if keys else FALSE
        else:
            linked_rows = builder.linked_to(name, subject, own)
            if linked_rows == FALSE:
                continue
            found[name] = linked_rows
        if len(linked) == 1:
            parents[name] = linked[0][0]
    where = {n: found[n] for n in order if n in found}
    for name in order:  # after every row that may point at them
        rows = pointed_rows(builder, name, found, pointed)
        if rows != FALSE:
            where[name] = rows
    actions: list[ErasureAction] = []
    if keys and any(policy.datasets[n].erasure == "shred" for n in where):
        actions.append(ShredKeys(subject_kind))
    actions += [RemoveKeyed(n, policy.datasets[n].erasure == "delete")
                for n in keyed_datasets(rt, subject_kind)]
    actions += [_rows(rt, builder, subject, n, w, where, parents, keys)
                for n, w in where.items()]
    return ErasurePlan(subject_kind, subject, keys, where, parents, tuple(actions))


def _rows(rt: Runtime, builder: StepBuilder, subject: str, name: str, where: Condition,
          found: Mapping[str, Condition], parents: Mapping[str, str],
          keys: Sequence[Value]) -> EraseRows:
    ds = rt.policy.datasets[name]
    if name != subject and ds.erasure != "delete":
        if ds.erasure != "anonymize":
            return EraseRows(name, ds.erasure, where)
        link = next((c for p, c in ds.belongs_to.items() if p == subject or p in found),
                    None)
        return anonymizing(builder, name, where, link)
    archive_column = None
    if ds.archive_targets:
        if name == subject:
            archive_column = builder.keys[name]
        elif subject in ds.belongs_to:
            archive_column = ds.belongs_to[subject]
        elif name in parents:
            archive_column = ds.belongs_to[parents[name]]
        elif keys:
            raise LetheError("archived rows of this dataset cannot be traced to the subject "
                             "(declare belongs_to the subject dataset)",
                             path=f"datasets.{name}")
    return deleting(builder, name, where, archive_column)


def pointed_rows(builder: StepBuilder, name: str, found: Mapping[str, Condition],
                 pointed: Mapping[str, Sequence[Value]] | None) -> Condition:
    """A `referenced_by` dataset's rows the `found` rows point at: by the keys in
    `pointed` (pinned when the erasure began), else through the pointing rows as they
    are now (FALSE for any other dataset)."""
    if not builder.policy.datasets[name].referenced_by:
        return FALSE
    if pointed is None or name not in pointed:
        return builder.pointed_at(name, found)
    return In(builder.keys[name], tuple(pointed[name])) if pointed[name] else FALSE


def anonymizing(builder: StepBuilder, name: str, where: Condition,
                link: str | None) -> EraseRows:
    """Rows of an `erasure: anonymize` dataset: scrubbed, and cut loose from the parent
    through `link` where the column allows — rows retention already anonymized are
    still linked, and deleting the parent would reach them."""
    ds = builder.policy.datasets[name]
    detach = link if link and builder.nullable.get((name, link), False) else None
    todo = identifying(ds) if detach is None else \
        any_of(identifying(ds), negate(IsNull(detach)))
    return EraseRows(name, "anonymize", where, scrub=anonymize_effect(ds, detach), todo=todo)


def deleting(builder: StepBuilder, name: str, where: Condition,
             archive_column: str | None) -> EraseRows:
    """Rows that go: those a foreign key outside any cascade keeps stay, their personal
    fields scrubbed; rows archived out of the table are traced by `archive_column`."""
    ds = builder.policy.datasets[name]
    return EraseRows(name, "delete", where, blockers=tuple(builder.blockers(name)),
                     scrub=anonymize_effect(ds) if ds.anonymized_fields else None,
                     todo=identifying(ds), archive_column=archive_column)
