"""What Redis and object datasets share: holds reach their keys through the subjects
their `per_subject` templates name.

A hold is compiled into conditions on SQL rows (`HoldScopes`); a key or an object has
no rows, so a hold reaches it through the subject rows the hold reaches (a subject
hold, a workspace hold on the subject dataset's workspace column, a hold on a parent),
read as the template's column values. A dataset hold keeps every key.
"""

from __future__ import annotations

from lethe.catalog import Catalog
from lethe.holds import HoldScopes
from lethe.policy.model import Policy
from lethe.stores.base import FALSE

HeldValues = frozenset[tuple[str, ...]]  # template column values of held subjects


def dataset_held(holds: HoldScopes, name: str) -> bool:
    return any(h.scope_kind == "dataset" and h.scope_value == name for h in holds.holds)


def held_subjects(policy: Policy, catalog: Catalog, holds: HoldScopes, subject_kind: str,
                  columns: tuple[str, ...]) -> HeldValues | None:
    """The `columns` of every subject row a hold in force reaches; None when none can."""
    subject = policy.subjects[subject_kind].dataset
    held = holds.down(subject) if holds.holds else FALSE
    if held == FALSE:
        return None
    rows = catalog.store_of(subject).select(policy.datasets[subject].table or "",
                                            list(columns), held)
    return frozenset(tuple(str(v) for v in row) for row in rows)
