"""Rows a subject's rows point at (`referenced_by`: customer.address_id -> address),
pinned by key for the whole erasure of a request.

They are erased last, once the rows pointing at them are gone; so their keys are read
while those rows still exist (the run that begins the erasure) and kept with the
baselines (`lethe_request_baselines.pointed`): a run killed after the customer row went
still finds the address. Each key belongs to the subject whose rows point at it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lethe.engine.erasure_plan import Owner
from lethe.holds import HoldScopes
from lethe.requests.subjects import Subject
from lethe.runtime import Runtime
from lethe.stores.base import FALSE, Condition, In

Pointers = dict[int, dict[str, list[str]]]  # request id -> dataset -> keys (as text)


def pointing_datasets(rt: Runtime, keys: Mapping[str, str]) -> list[str]:
    """The SQL datasets found through `referenced_by`."""
    return [n for n in keys if rt.policy.datasets[n].referenced_by]


def pointed_now(rt: Runtime, name: str, where: Mapping[str, Condition],
                owners: Mapping[str, Owner], subjects: Sequence[Subject],
                single: bool) -> dict[str, set[str]]:
    """Each subject's keys of `name` rows its rows point at now (subject mark -> keys)."""
    found: dict[str, set[str]] = {}
    for referrer, column in rt.policy.datasets[name].referenced_by.items():
        selected = where.get(referrer, FALSE)
        if selected == FALSE:
            continue
        owner = None if single else owners.get(referrer)
        if owner is None and not single:
            continue  # rows that cannot be told apart by subject point at nothing
        columns = [column] if owner is None else [column, owner.column]
        rows = rt.catalog.store_of(referrer).select(
            rt.policy.datasets[referrer].table or "", columns, selected)
        for row in rows:
            mark = subjects[0].mark if owner is None else owner.of.get(str(row[1]))
            if row[0] is not None and mark is not None:
                found.setdefault(mark, set()).add(str(row[0]))
    return found


def pinned_held(key: str, subject_kind: str, dataset: str, subjects: Sequence[Subject],
                pointers: Pointers, holds: HoldScopes) -> Condition:
    """Rows of `dataset` (column `key`) whose subject a subject hold names, by an identity
    of its request or its key: the rows pointing at them may be gone, so the holds
    cannot reach them there."""
    values = set(holds.subject_values(subject_kind))
    if not values:
        return FALSE
    keys = tuple(k for s in subjects if values & {*s.record.identities.values(), s.mark}
                 for k in pointers.get(s.record.id, {}).get(dataset, ()))
    return In(key, keys) if keys else FALSE
