"""A retention purge of subject rows reaches every store, as an erasure does.

When a deleting step (a `delete` rule, or the purge of rows soft-deleted past
`recover_for`) removes rows of a subject dataset, the plan carries, right before the
dataset's own steps, one line per thing that goes with those subjects outside the SQL
cascades: `shred` (their data keys, when a linked dataset is `erasure: shred`), `remove`
(their objects and Redis keys, per keyed dataset with `erasure: delete`) and
`remove-archived` (rows an `archive` rule already moved out of the subject table or any
dataset below it that goes with it; below a direct child, the rows in between are read
to tell whose an archived row is). Each line's `parent` is the subject dataset.
Planning counts them with the same code that runs them (`reach`, `dry=True`), so plan
and run agree; verification counts them again.

The subjects concerned are the rows the subject dataset's deleting steps will remove:
due, not blocked by a foreign key, not held (a hold on any linked row keeps the subject).
Each line is one unit of work under the hold gate: the holds are read inside it.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from lethe.crypto.keys import live_subjects
from lethe.engine.erasure_plan import build_erasure_plan, plan_owners
from lethe.engine.executor import Executor
from lethe.engine.steps import Step, StepBuilder
from lethe.engine.subjects import SubjectReach, SubjectRow
from lethe.holds import HoldScopes
from lethe.policy.graph import Graph
from lethe.runtime import Runtime
from lethe.stores.base import FALSE, In, all_of, any_of, negate

REACH_ACTIONS = ("shred", "remove", "remove-archived")


def is_reach(step: Step) -> bool:
    """Is this plan line one of a subject purge's reach lines (not a rule's shred)?"""
    return step.action in REACH_ACTIONS and step.parent is not None


def subject_kind_of(rt: Runtime, dataset: str) -> str | None:
    return rt.policy.subject_kind_of(dataset)


def _linked(graph: Graph, name: str) -> set[str]:
    """The dataset and every dataset below it through belongs_to."""
    found, todo = {name}, [name]
    while todo:
        for link in graph.children(todo.pop()):
            if link.child not in found:
                found.add(link.child)
                todo.append(link.child)
    return found


def reach_steps(rt: Runtime, builder: StepBuilder, name: str) -> list[Step]:
    """Plan lines for what goes with the subject rows `name`'s deleting steps remove."""
    kind = subject_kind_of(rt, name)
    if kind is None or not any(s.deletes for s in builder.own_steps(name)):
        return []
    reach = SubjectReach(rt, builder, kind)
    steps: list[Step] = []
    if any(rt.policy.datasets[n].erasure == "shred" for n in _linked(rt.catalog.graph, name)):
        steps.append(Step(name, None, "shred", name))
    steps += [Step(n, None, "remove", name) for n in reach.keyed
              if rt.policy.datasets[n].erasure == "delete"]
    steps += [Step(n, None, "remove-archived", name) for n in reach.archived]
    return steps


@dataclass(frozen=True)
class Reached:
    done: int  # keys shredded, objects or keys removed, archived rows taken (or, dry, due)
    held: int  # such items kept because a hold reaches them


def _subjects(rt: Runtime, builder: StepBuilder, reach: SubjectReach, parent: str,
              holds: HoldScopes) -> tuple[list[SubjectRow], list[SubjectRow]]:
    """The subject rows the parent's deleting steps will remove, and those due but held:
    (mark, template columns) each, the key among the columns."""
    table = rt.policy.datasets[parent].table or ""
    key = builder.keys[parent]
    store = rt.catalog.store_of(parent)
    where = all_of(builder.deleting_due(parent), negate(builder.referenced(parent)))
    columns = list(dict.fromkeys([key, *reach.columns()]))
    rows = [(str(row[0]), dict(zip(columns, row, strict=True)))
            for row in store.select(table, columns, where)]
    held = holds.held(parent, cascading=True)
    marks = set() if held == FALSE or not rows else \
        {str(v) for v in store.values(table, key, all_of(where, held))}
    return [r for r in rows if r[0] not in marks], [r for r in rows if r[0] in marks]


def reach(rt: Runtime, builder: StepBuilder, step: Step, *, dry: bool,
          archiving: bool = False) -> Reached:
    """Do (or, `dry`, count) one reach line. Run under the hold gate: the holds are read
    here, and everything removed is gone before the gate is left. `archiving`: the plan
    archives the dataset's due rows before this line (a count then includes those of
    the subjects concerned: they will be in the archive when the line runs)."""
    assert step.parent is not None
    kind = subject_kind_of(rt, step.parent)
    assert kind is not None
    subjects = SubjectReach(rt, builder, kind)
    key = builder.keys[step.parent]
    executor = Executor(rt, builder)
    with nullcontext(executor.holds()) if dry else executor.turn() as holds:
        free, held = _subjects(rt, builder, subjects, step.parent, holds)
        if step.action == "shred":
            live = live_subjects(rt.control.engine, kind, [r[1][key] for r in free])
            kept = len(live_subjects(rt.control.engine, kind, [r[1][key] for r in held]))
            return Reached(len(live if dry else subjects.shred(live)), kept)
        if step.action == "remove":
            found = subjects.keys_of(step.dataset, free + held)
            held_marks = {m for m, _ in held}
            kept = sum(len(found.get(m, [])) for m in held_marks)
            free_keys = {m: keys for m, keys in found.items() if m not in held_marks}
            removed, by_key = subjects.remove_keys(step.dataset, free_keys, holds, delete=True,
                                                   dry=dry)
            return Reached(sum(removed.values()), kept + sum(by_key.values()))
        column = subjects.archived[step.dataset]
        owners = _archive_owners(rt, builder, kind, step.dataset,
                                 [row[key] for _, row in free])
        taken = sum(subjects.remove_archived(step.dataset, column, owners, holds,
                                             dry=dry).values())
        if dry and archiving and owners:
            taken += _to_archive(rt, builder, holds, step.dataset, column, tuple(owners))
        return Reached(taken, 0)


def _archive_owners(rt: Runtime, builder: StepBuilder, kind: str, name: str,
                    keys: list[object]) -> dict[str, str]:
    """Values of `name`'s archive column that belong to these subjects -> subject key. A
    dataset naming the subject directly needs no lookup; below a child, the rows in
    between are read (they are still there: the purge cascades after this line)."""
    if not keys:
        return {}
    ds = rt.policy.datasets[name]
    subject = rt.policy.subjects[kind].dataset
    if name == subject or subject in ds.belongs_to:
        return {str(k): str(k) for k in keys}
    plan = build_erasure_plan(rt, builder, kind, keys)
    owner = plan_owners(rt, builder, plan).get(name)
    return dict(owner.of) if owner is not None else {}


def _to_archive(rt: Runtime, builder: StepBuilder, holds: HoldScopes, name: str,
                column: str, subjects: tuple[object, ...]) -> int:
    """Rows of these subjects that `name`'s archive steps will archive (due, not held,
    not blocked)."""
    due = any_of(*(builder.due(s) for s in builder.own_steps(name) if s.action == "archive"))
    return rt.catalog.store_of(name).count(
        rt.policy.datasets[name].table or "",
        all_of(due, In(column, subjects), negate(holds.held(name, cascading=True)),
               negate(builder.referenced(name))))
