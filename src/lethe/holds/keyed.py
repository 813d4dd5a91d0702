"""Holds over what has no rows of its own: objects, Redis keys, archived rows.

A key, an object or an archived row reaches its subject through the dataset's
`per_subject` template (or, archived, its link column), so a hold reaches it through the
subject rows the hold reaches (a subject hold, a workspace hold on the subject
dataset's workspace column, a hold on a parent), read as the template's column values.
A dataset hold keeps every key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from lethe.control.store import Hold
from lethe.holds.rows import HoldScopes
from lethe.stores.base import FALSE, RowStore

HeldValues = frozenset[tuple[str, ...]]  # template column values of held subjects


def held_subjects(holds: HoldScopes, store: RowStore, subject_kind: str,
                  columns: tuple[str, ...]) -> HeldValues | None:
    """The `columns` of every subject row a hold in force reaches; None when none can.
    `store`: the store of the subject dataset."""
    subject = holds.policy.subjects[subject_kind].dataset
    held = holds.down(subject) if holds.holds else FALSE
    if held == FALSE:
        return None
    rows = store.select(holds.policy.datasets[subject].table or "", list(columns), held)
    return frozenset(tuple(str(v) for v in row) for row in rows)


def archived_row_held(holds: HoldScopes, dataset: str) -> Callable[[Mapping[str, object]], bool]:
    """Is an archived row of `dataset` kept by a hold on its dataset or its workspace?
    (A hold on its subject is applied by the caller, who knows each row's subject.)"""
    if holds.dataset_held(dataset):
        return lambda _row: True
    column = holds.policy.datasets[dataset].workspace
    workspaces = set(holds.workspaces())
    if column is None or not workspaces:
        return lambda _row: False
    return lambda row: str(row.get(column)) in workspaces


def holds_reaching(holds: Sequence[Hold], subject_kind: str, values: set[str],
                   held_datasets: set[str]) -> list[Hold]:
    """The holds that can be what keeps a subject's rows: on a dataset where rows were
    held, on one of the subject's keys, or on a workspace (any, for want of knowing the
    rows' workspaces); every hold when none of these is."""
    relevant = [h for h in holds
                if (h.scope_kind == "dataset" and h.scope_value in held_datasets)
                or (h.scope_kind == "subject" and h.subject_kind == subject_kind
                    and h.scope_value in values)
                or h.scope_kind == "workspace"]
    return relevant or list(holds)
