"""What each retention step selects and does, as store-neutral conditions and effects.

Pure: policy, resolved keys, holds and an instant in; conditions out. The planner
counts these selections, the executor sweeps them, the verifier re-counts them, so
all three agree on what "due" means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from lethe.catalog import Reference
from lethe.engine.anonymize import anonymizer, constant_written, still_identifying
from lethe.holds import CASCADING, HoldScopes
from lethe.policy.conditions import governed_by
from lethe.policy.durations import Duration
from lethe.policy.model import Dataset, Policy, Rule, SoftDelete
from lethe.policy.periods import UNIT_SECONDS, KeepFrom, longest, seconds
from lethe.stores.base import (
    FALSE,
    TRUE,
    Anonymize,
    Cascade,
    Condition,
    Delete,
    Effect,
    Eq,
    Exists,
    In,
    IsNull,
    Older,
    OlderBySetting,
    SetColumns,
    all_of,
    any_of,
    negate,
)

# the periods a rule's parents set, read once: (the first parent key, the period in
# seconds of each key from there on, the default where the setting is not valid, 0
# where there was no such parent; see OlderBySetting)
Known = tuple[int, tuple[float, ...]]

DELETING = ("delete", "purge")


@dataclass(frozen=True)
class Step:
    """One line of a plan: a rule of a dataset, a purge, or a cascade from a parent."""

    dataset: str
    rule: int | None
    action: str  # delete | soft-delete | anonymize | archive | shred | purge | cascade
    parent: str | None = None

    @property
    def deletes(self) -> bool:
        return self.action in DELETING


def step_label(step: Step) -> str:
    """`sessions[0] delete via users`: a step as plans and progress bars name it."""
    rule = "" if step.rule is None else f"[{step.rule}]"
    via = f" via {step.parent}" if step.parent else ""
    return f"{step.dataset}{rule} {step.action}{via}"


def belongs_to_children(policy: Policy) -> dict[str, list[str]]:
    """Dataset -> the datasets that `belongs_to` it, in policy order (what
    `StepBuilder.cascade_steps` walks)."""
    children: dict[str, list[str]] = {}
    for name, ds in policy.datasets.items():
        for parent in ds.belongs_to:
            children.setdefault(parent, []).append(name)
    return children


def identifying(ds: Dataset) -> Condition:
    return any_of(*(still_identifying(c, m) for c, m in ds.anonymized_fields.items()))


def anonymize_effect(ds: Dataset, detach: str | None = None) -> Anonymize:
    fields = ds.anonymized_fields.items()
    written = [(c, constant_written(m)) for c, m in fields]
    constants = tuple((c, value) for c, (constant, value) in written) \
        if all(constant for _, (constant, _) in written) else None
    return Anonymize(tuple((c, anonymizer(m)) for c, m in fields), detach, constants)


def rule_due(policy: Policy, keys: Mapping[str, str], ds: Dataset, index: int, rule: Rule,
             now: datetime, chosen: Mapping[str, Duration] | None = None,
             known: Known | None = None) -> Condition:
    aged = rule_aged(policy, keys, ds, rule, now, chosen, known)
    if aged == FALSE:
        return FALSE
    due = all_of(governed_by(ds, index, policy), aged)
    if rule.action == "soft-delete" and ds.soft_delete:
        due = all_of(due, not_soft_deleted(ds.soft_delete))
    if rule.action == "anonymize":
        due = all_of(due, identifying(ds))
    return due


def rule_aged(policy: Policy, keys: Mapping[str, str], ds: Dataset, rule: Rule,
              now: datetime, chosen: Mapping[str, Duration] | None = None,
              known: Known | None = None) -> Condition:
    """Rows past the rule's period: a fixed cutoff, a period each row's parent sets, or
    one each workspace chose through the API (`chosen`: workspace -> period; others get
    the default), all read in the store's SQL (FALSE: kept forever)."""
    keep = rule.keep
    if isinstance(keep, Duration):
        cutoff = keep.before(now)
        return FALSE if cutoff is None else Older(rule.after, cutoff)
    if not keep.from_:
        return _by_workspace(ds, rule, keep, chosen or {}, now)
    parent = policy.datasets[keep.dataset]
    first, periods = known or (0, ())
    return OlderBySetting(rule.after, now, parent.table or "", keys[keep.dataset],
                          ds.belongs_to[keep.dataset], keep.column, UNIT_SECONDS[keep.unit],
                          seconds(keep.clamped(keep.default, now), now),
                          seconds(keep.min, now), seconds(keep.max, now), first, periods)


def _by_workspace(ds: Dataset, rule: Rule, keep: KeepFrom, chosen: Mapping[str, Duration],
                  now: datetime) -> Condition:
    """One cutoff per period the workspaces chose (kept within the bounds), one `IN` of
    the workspaces that chose it, longest first, each leaving out the workspaces of the
    longer ones (two ids the column takes for one value — a UUID in two cases — keep the
    longer period); the default for every other row (a NULL workspace included)."""
    assert ds.workspace is not None  # the policy requires it of such a rule
    groups: dict[int, tuple[Duration, list[str]]] = {}
    for workspace, period in sorted(chosen.items()):
        applied = keep.clamped(period, now)
        groups.setdefault(seconds(applied, now), (applied, []))[1].append(workspace)
    parts: list[Condition] = []
    longer: tuple[str, ...] = ()
    for _, (period, workspaces) in sorted(groups.items(), reverse=True):
        cutoff = period.before(now)
        assert cutoff is not None  # clamped: never forever
        mine = In(ds.workspace, tuple(workspaces))
        parts.append(all_of(mine, negate(In(ds.workspace, longer)) if longer else TRUE,
                            Older(rule.after, cutoff)))
        longer += tuple(workspaces)
    default = keep.clamped(keep.default, now).before(now)
    assert default is not None
    rest: Condition = Older(rule.after, default)
    if chosen:
        rest = all_of(negate(In(ds.workspace, tuple(sorted(chosen)))), rest)
    return any_of(*parts, rest)


def purge_due(ds: Dataset, now: datetime) -> Condition:
    if ds.soft_delete is None:
        return FALSE
    cutoff = ds.soft_delete.recover_for.before(now)
    if cutoff is None:
        return FALSE
    older = Older(ds.soft_delete.since, cutoff)  # a NULL timestamp is never older
    return older if ds.soft_delete.deleted_value is None else \
        all_of(soft_deleted(ds.soft_delete), older)


def time_column(ds: Dataset, step: Step) -> tuple[str, Duration] | None:
    """The time column a step's rows age by, and their limit: a rule's `after` and
    `keep`, a purge's soft-delete time and recovery window; None: no clock (a cascade,
    a `keep: forever` rule with no `after`)."""
    if step.action == "purge":
        soft = ds.soft_delete
        return None if soft is None else (soft.since, soft.recover_for)
    if step.rule is None or step.parent is not None or not ds.retention[step.rule].after:
        return None
    rule = ds.retention[step.rule]
    return rule.after, longest(rule.keep)  # a period from data: a lag's lower bound


def soft_deleted(soft: SoftDelete) -> Condition:
    """Rows soft-deleted: the timestamp set, or the flag at its deleted value."""
    if soft.deleted_value is None:
        return negate(IsNull(soft.column))
    return Eq(soft.column, soft.deleted_value)


def not_soft_deleted(soft: SoftDelete) -> Condition:
    """Rows still live (a NULL flag counts as live, as SQL's NOT would not say)."""
    if soft.deleted_value is None:
        return IsNull(soft.column)
    return any_of(IsNull(soft.column), negate(Eq(soft.column, soft.deleted_value)))


def soft_delete_effect(soft: SoftDelete, now: datetime) -> SetColumns:
    """Soft-delete a row now: the timestamp, or the flag and the time it was set."""
    if soft.at is None or soft.deleted_value is None:
        return SetColumns(((soft.column, now),))
    return SetColumns(((soft.column, soft.deleted_value), (soft.at, now)))


@dataclass(frozen=True)
class StepBuilder:
    policy: Policy
    keys: Mapping[str, str]
    nullable: Mapping[tuple[str, str], bool]  # (dataset, column) -> nullable
    now: datetime
    # dataset -> foreign keys into it that no cascade handles
    references: Mapping[str, tuple[Reference, ...]] = field(default_factory=dict)
    # (store, table, column) of such a reference -> the referencing rows that steps run
    # earlier in the plan clear (see `ahead`); empty when reading the database as it is
    cleared: Mapping[tuple[str, str, str], Condition] = field(default_factory=dict)
    # dataset -> workspace -> the period it chose through the API (control.overrides)
    chosen: Mapping[str, Mapping[str, Duration]] = field(default_factory=dict)
    # (dataset, rule) -> the periods its parents set, read once (engine.plan.known_periods)
    known: Mapping[tuple[str, int], Known] = field(default_factory=dict)

    def ahead(self, holds: HoldScopes, planned: Sequence[str]) -> StepBuilder:
        """This builder as the plan must see the database: when each step's turn comes,
        the steps before it have run. Children go first, so a referencing dataset's own
        deletes (and anonymizations that null its link) run before the dataset they
        point at; rows they clear no longer block it. `planned`: the plan's datasets,
        children first. The run itself uses the plain builder: it sees the real rows.
        A referencing row deleted only by another dataset's cascade is not foreseen."""
        cleared: dict[tuple[str, str, str], Condition] = {}
        builder = replace(self, cleared=cleared)  # filled in order: children first
        referencing = {(self.policy.datasets[parent].store, ref.table, ref.column)
                       for parent, refs in self.references.items() for ref in refs}
        for name in planned:
            ds = self.policy.datasets[name]
            removed = all_of(builder.removing_due(name), negate(holds.held(name, cascading=True)),
                             negate(builder.referenced(name)))
            for store, table, column in referencing:
                if (store, table) != (ds.store, ds.table):
                    continue
                nulled = [all_of(builder.due(s), negate(holds.held(name, cascading=False)))
                          for s in builder.own_steps(name) if s.action == "anonymize"
                          and ds.anonymized_fields.get(column) == "null"]
                cleared[(store, table, column)] = any_of(removed, *nulled)
        return builder

    def own_steps(self, name: str) -> list[Step]:
        ds = self.policy.datasets[name]
        steps = [Step(name, i, rule.action) for i, rule in enumerate(ds.retention)]
        if ds.soft_delete is not None:
            steps.append(Step(name, None, "purge"))
        return steps

    def due(self, step: Step, holds: HoldScopes | None = None) -> Condition:
        """Rows the step would act on, holds aside (but a cascade follows only parents
        that are free to go, so `holds` shapes which children it reaches)."""
        ds = self.policy.datasets[step.dataset]
        if step.action == "purge":
            return purge_due(ds, self.now)
        if step.action == "cascade":
            assert step.parent is not None
            parents = all_of(self.removing_due(step.parent),
                             negate(self.referenced(step.parent)))
            if holds is not None:
                parents = all_of(parents, negate(holds.held(step.parent, cascading=True)))
            linked = self.linked_to(step.dataset, step.parent, parents)
            return all_of(linked, negate(self.removing_due(step.dataset)))
        assert step.rule is not None
        return rule_due(self.policy, self.keys, ds, step.rule, ds.retention[step.rule],
                        self.now, self.chosen.get(step.dataset),
                        self.known.get((step.dataset, step.rule)))

    def deleting_due(self, name: str) -> Condition:
        """Rows the dataset's own steps delete (delete rules and purge)."""
        return any_of(*(self.due(s) for s in self.own_steps(name) if s.deletes))

    def removing_due(self, name: str) -> Condition:
        """Rows the dataset's own steps take out of its table (deleted, or archived and
        deleted): their children are cascaded, and a child's own such rows are gone
        before its parent's cascade comes (children go first)."""
        return any_of(*(self.due(s) for s in self.own_steps(name) if self.removes(s)))

    def linked_to(self, name: str, ancestor: str, ancestor_where: Condition) -> Condition:
        """Rows of `name` that belong, through belongs_to, to `ancestor` rows matching."""
        ds = self.policy.datasets[name]
        parts: list[Condition] = []
        for parent, column in ds.belongs_to.items():
            parent_table = self.policy.datasets[parent].table or ""
            inner = ancestor_where if parent == ancestor else \
                self.linked_to(parent, ancestor, ancestor_where)
            if inner != FALSE:
                parts.append(Exists(parent_table, self.keys[parent], column, inner,
                                    self.policy.datasets[parent].store))
        return any_of(*parts)

    def pointed_at(self, name: str, found: Mapping[str, Condition]) -> Condition:
        """Rows of `name` (a `referenced_by` dataset) that rows of its referrers matching
        `found` (dataset -> condition) point at."""
        ds = self.policy.datasets[name]
        return any_of(*(Exists(self.policy.datasets[referrer].table or "", column,
                               self.keys[name], found[referrer],
                               self.policy.datasets[referrer].store)
                        for referrer, column in ds.referenced_by.items()
                        if found.get(referrer, FALSE) != FALSE))

    def removes(self, step: Step) -> bool:
        """Does the step delete rows (retention deletes, purges, deleting cascades)?"""
        return step.deletes or step.action == "archive" or (
            step.action == "cascade" and self.policy.datasets[step.dataset].erasure == "delete")

    def standalone(self, step: Step) -> bool:
        """A cascade into another store: run as its own sweep before the parent's steps,
        since one transaction cannot span two databases."""
        return step.action == "cascade" and step.parent is not None and \
            self.policy.datasets[step.dataset].store != self.policy.datasets[step.parent].store

    def held(self, step: Step, holds: HoldScopes) -> Condition:
        return holds.held(step.dataset, cascading=self.removes(step))

    def dependencies(self) -> list[tuple[str, str]]:
        """(child, parent) pairs: belongs_to links, and datasets whose rows hold a foreign
        key into another's. Children go first, so a run that clears the referencing rows
        (deletes them, or anonymizes the link away) frees their parents in the same run."""
        pairs = [(child, parent) for child, ds in self.policy.datasets.items()
                 for parent in ds.belongs_to]
        by_table = {(ds.store, ds.table): name for name, ds in self.policy.datasets.items()}
        for parent, refs in self.references.items():
            store = self.policy.datasets[parent].store
            pairs += [(by_table[(store, ref.table)], parent) for ref in refs
                      if (store, ref.table) in by_table]
        return pairs

    def blocked(self, step: Step) -> Condition:
        """Rows a deleting step must keep because a foreign key still points at them."""
        return self.referenced(step.dataset) if self.removes(step) else FALSE

    def referenced(self, name: str) -> Condition:
        """Rows that rows outside any cascade reference through a real foreign key.

        Deleting them would fail (NO ACTION / RESTRICT), or would make the database
        destroy or rewrite rows the policy keeps (ON DELETE CASCADE / SET NULL): a
        retained invoice, a held row. They stay until what references them goes.
        """
        return any_of(*(where for _why, where in self.blockers(name)))

    def blockers(self, name: str) -> list[tuple[str, Condition]]:
        """`referenced`, one foreign key at a time: (the key as plans and certificates
        name it, the rows it keeps). A child the parent's deletion cascades into passes
        on what keeps its own rows."""
        ds = self.policy.datasets[name]
        store = ds.store
        found: list[tuple[str, Condition]] = [
            (ref.describe(), Exists(ref.table, ref.column, self.keys[name],
                                    negate(self.cleared.get((store, ref.table, ref.column),
                                                            FALSE))))
            for ref in self.references.get(name, ())]
        declared = {(store, ref.table, ref.column) for ref in self.references.get(name, ())}
        for referrer, link in ds.referenced_by.items():  # a link the schema may not declare
            other = self.policy.datasets[referrer]
            if (other.store, other.table, link) not in declared and referrer in self.keys:
                found.append((f"{other.table}.{link} (referenced_by)",
                              Exists(other.table or "", link, self.keys[name], TRUE,
                                     other.store)))
        for child, below_ds in self.policy.datasets.items():
            column = below_ds.belongs_to.get(name)
            if column is not None and below_ds.erasure == "delete" and child in self.keys:
                found += [(why, Exists(below_ds.table or "", column, self.keys[name], below,
                                       below_ds.store))
                          for why, below in self.blockers(child)]
        return found

    def effect(self, step: Step) -> Effect:
        ds = self.policy.datasets[step.dataset]
        if step.action in DELETING:
            return Delete()
        if step.action == "soft-delete" and ds.soft_delete is not None:
            return soft_delete_effect(ds.soft_delete, self.now)
        if step.action == "anonymize":
            return anonymize_effect(ds)
        if step.action == "cascade" and step.parent is not None:
            if ds.erasure == "delete":
                return Delete()
            link = ds.belongs_to.get(step.parent)
            nullable = link is not None and self.nullable.get((step.dataset, link), False)
            return anonymize_effect(ds, link if nullable else None)
        raise ValueError(f"action {step.action} has no row effect")

    def cascades(self, name: str, holds: HoldScopes) -> tuple[Cascade, ...]:
        """What deleting a row of `name` does to its children, deepest first."""
        result: list[Cascade] = []
        store = self.policy.datasets[name].store
        for parent_link in [link for link in holds.graph.children(name)]:
            child = self.policy.datasets[parent_link.child]
            if child.erasure not in CASCADING or child.store != store:
                continue  # another store's children are standalone steps
            deletes = child.erasure == "delete"
            keep = negate(holds.held(parent_link.child, cascading=deletes))
            if deletes:
                keep = all_of(keep, negate(self.referenced(parent_link.child)))
            if child.erasure == "delete":
                effect: Effect = Delete()
                below = self.cascades(parent_link.child, holds)
            else:
                nullable = self.nullable.get((parent_link.child, parent_link.column), False)
                effect = anonymize_effect(child, parent_link.column if nullable else None)
                below = ()
            result.append(Cascade(parent_link.child, child.table or "",
                                  self.keys[parent_link.child], parent_link.column, effect,
                                  keep, below))
        return tuple(result)

    def cascade_steps(self, name: str, graph_children: Mapping[str, list[str]]) -> list[Step]:
        """Plan lines for every descendant a deleting step of `name` reaches."""
        steps: list[Step] = []

        def walk(parent: str) -> None:
            for child in graph_children.get(parent, []):
                erasure = self.policy.datasets[child].erasure
                if erasure in CASCADING:
                    if erasure == "delete":
                        walk(child)
                    step = Step(child, None, "cascade", name)
                    if step not in steps:  # reachable along two paths: one line
                        steps.append(step)

        if any(self.removes(s) for s in self.own_steps(name)):
            walk(name)
        return steps
