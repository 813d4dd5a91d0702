"""A workspace's termination as an erasure plan: every row of the workspace in every SQL
store, its subjects' Redis keys, objects and data keys, and its archived rows.

A dataset with a `workspace:` column gives its rows of the workspace by that column; a
dataset without one, the rows that belong (through `belongs_to`, at any depth) to rows
found so; a `referenced_by` dataset, the rows those point at (an address), last. Each
dataset goes by its own `erasure` setting — delete, anonymize, retain or shred — children
first, exactly as an erasure request's plan (lethe.engine.erasure_plan), and the subjects
of every kind kept per workspace (their dataset has a `workspace:` column) lose their
keyed items and data keys before any row goes. The same executor carries it out, so
holds bind it the same way, batch by batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lethe.engine.erasure_plan import (
    EraseRows,
    ErasureAction,
    ErasurePlan,
    RemoveKeyed,
    ShredKeys,
    anonymizing,
    deleting,
    pointed_rows,
)
from lethe.engine.steps import StepBuilder
from lethe.engine.subjects import keyed_datasets
from lethe.errors import LetheError
from lethe.policy.model import TERMINATION
from lethe.runtime import Runtime
from lethe.stores.base import FALSE, Condition, Exists, In, Value, any_of


def workspace_rows(rt: Runtime, builder: StepBuilder, workspace: str) -> dict[str, Condition]:
    """Each SQL dataset's rows of the workspace, children first (see the module)."""
    policy = rt.policy
    order = [n for n in rt.catalog.graph.order if n in builder.keys]
    found: dict[str, Condition] = {}
    for name in reversed(order):  # parents first: a row is found through its parent's
        ds = policy.datasets[name]
        # a row that belongs to the workspace's rows goes with them, whatever workspace
        # it names itself (a comment in another workspace by one of its people), as it
        # would with an erasure of that person: else a foreign key would block the
        # parent or cascade into it unaccounted
        linked = any_of(*(Exists(policy.datasets[parent].table or "", builder.keys[parent],
                                 column, found[parent], policy.datasets[parent].store)
                          for parent, column in ds.belongs_to.items() if parent in found))
        own = In(ds.workspace, (workspace,)) if ds.workspace else FALSE
        if any_of(own, linked) != FALSE:
            found[name] = any_of(own, linked)
    return {n: found[n] for n in order if n in found}


def subject_kinds(rt: Runtime, where: Mapping[str, Condition]) -> list[str]:
    """The subject kinds whose subject rows the workspace's rows include."""
    return [kind for kind, subject in rt.policy.subjects.items() if subject.dataset in where]


def build_termination_plan(rt: Runtime, builder: StepBuilder,
                           found: Mapping[str, Condition],
                           subjects: Mapping[str, Sequence[Value]],
                           pointed: Mapping[str, Sequence[Value]] | None = None
                           ) -> ErasurePlan:
    """The termination of a workspace whose rows are `found` (`workspace_rows`).
    `subjects`: each kind's subject keys in the workspace, read when the termination
    began (their keyed items and data keys go first). `pointed`: the keys of
    `referenced_by` rows, pinned when it began; without them, those the workspace's
    rows point at now."""
    policy = rt.policy
    where = dict(found)
    for name in [n for n in rt.catalog.graph.order if n in builder.keys]:
        rows = FALSE if name in where else pointed_rows(builder, name, where, pointed)
        if rows != FALSE:
            where[name] = rows
    actions: list[ErasureAction] = []
    shredded = any(policy.datasets[n].erasure == "shred" for n in where)
    for kind in subjects:
        if shredded:  # the keys the tally kept since the termination began (rows may be gone)
            actions.append(ShredKeys(kind))
        actions += [RemoveKeyed(n, policy.datasets[n].erasure == "delete", kind)
                    for n in keyed_datasets(rt, kind)]
    actions += [_rows(rt, builder, name, rows, where) for name, rows in where.items()]
    others = {kind: tuple(keys) for kind, keys in subjects.items()}
    return ErasurePlan(TERMINATION, "", (), where, {}, tuple(actions), others)


def _rows(rt: Runtime, builder: StepBuilder, name: str, where: Condition,
          found: Mapping[str, Condition]) -> EraseRows:
    ds = rt.policy.datasets[name]
    if any(s.dataset == name for s in rt.policy.subjects.values()):
        erasure = "delete"  # a person's own rows go, as in an erasure of that person
    else:
        erasure = ds.erasure
    if erasure in ("retain", "shred"):
        return EraseRows(name, erasure, where)
    if erasure == "anonymize":
        link = next((c for p, c in ds.belongs_to.items() if p in found), None)
        return anonymizing(builder, name, where, link)
    if ds.archive_targets and not ds.workspace:
        raise LetheError("archived rows of this dataset cannot be traced to a workspace "
                         "(declare its `workspace:` column)", path=f"datasets.{name}")
    return deleting(builder, name, where, ds.workspace if ds.archive_targets else None)
