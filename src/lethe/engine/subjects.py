"""What goes with a subject row, wherever it is: its objects and Redis keys (through the
datasets' `per_subject` templates), its rows already archived, and its data keys.

An erasure request and a retention purge of a subject row (an account the app
soft-deleted, past its `recover_for`; a subject row a delete rule removes) both come
here, so an account deleted through the app leaves every store exactly as an erased one
does. Rows in SQL stores go through the sweeps and their cascades; this module handles
the rest. Each removal reads the holds under the hold gate and finishes before leaving
it (lethe.holds.gate); held subjects, keys and rows stay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lethe.engine.archive import ArchiveSink
from lethe.engine.cache import CacheDatasets
from lethe.engine.objects import ObjectDatasets
from lethe.engine.steps import StepBuilder
from lethe.holds import HoldScopes, archived_row_held
from lethe.policy.model import template_fields
from lethe.runtime import Runtime
from lethe.stores.base import Value

Counts = dict[str, int]  # subject mark (its key as text) -> items
SubjectRow = tuple[str, Mapping[str, object]]  # (mark, the columns templates name)


def keyed_datasets(rt: Runtime, subject_kind: str) -> dict[str, CacheDatasets | ObjectDatasets]:
    """The Redis and object datasets whose `per_subject` says where this kind of
    subject's keys are, each with what handles it."""
    found: dict[str, CacheDatasets | ObjectDatasets] = {}
    for kind, names in ((CacheDatasets, rt.catalog.cache_datasets()),
                        (ObjectDatasets, rt.catalog.object_datasets())):
        handler = kind(rt.policy, rt.catalog)
        found.update((n, handler) for n in names
                     if subject_kind in rt.policy.datasets[n].per_subject)
    return found


def archived_links(rt: Runtime, subject: str, key: str) -> dict[str, str]:
    """Datasets whose `archive` rules moved rows out of a table whose rows go with a
    subject row: the subject dataset (by its key) and every dataset below it through
    `belongs_to` links of datasets with `erasure: delete` (`retain` keeps its rows,
    archived or not). Dataset -> the column its rows name their parent (the subject,
    or for a grandchild, the dataset above it) by."""
    found: dict[str, str] = {}
    reached, todo = {subject}, [subject]
    while todo:
        parent = todo.pop()
        for link in rt.catalog.graph.children(parent):
            child = rt.policy.datasets[link.child]
            if link.child in reached or child.erasure != "delete":
                continue
            reached.add(link.child)
            todo.append(link.child)
            if child.archive_targets:
                found[link.child] = child.belongs_to.get(subject, child.belongs_to[parent])
    if rt.policy.datasets[subject].archive_targets:
        found[subject] = key
    return found


def remove_archived(rt: Runtime, name: str, column: str, owners: Mapping[str, str],
                    holds: HoldScopes, *, dry: bool = False) -> Counts:
    """Take the owners' rows out of every archive of `name` (value of `column` as
    text -> subject mark); rows a dataset or workspace hold reaches stay. Call under
    the hold gate; `owners` must already leave out subjects a hold keeps. `dry`:
    count them, change nothing."""
    if holds.dataset_held(name):
        return {}
    return archived_rows(rt, name, column, owners, archived_row_held(holds, name), dry=dry)


def archived_rows(rt: Runtime, name: str, column: str, owners: Mapping[str, str],
                  held: Callable[[Mapping[str, Any]], bool] = lambda _row: False, *,
                  dry: bool = True, settled: bool = False) -> Counts:
    """The owners' rows in every archive of `name`, per owner (none `held` taken out
    unless `dry`; by default, a count of them all, held or not). `settled`: raise
    ArchivePending while a chunk an interrupted archive run left may hold some."""
    taken: Counts = {}
    for target in sorted(rt.policy.datasets[name].archive_targets):
        sink = ArchiveSink(rt, name, rt.catalog.object_store(target))
        for mark, rows in sink.erase(column, owners, held, dry=dry,
                                     settled=settled).items():
            taken[mark] = taken.get(mark, 0) + rows
    return taken


class SubjectReach:
    """A subject kind's objects, keys, archived rows and data keys."""

    def __init__(self, rt: Runtime, builder: StepBuilder, subject_kind: str) -> None:
        self.rt, self.builder, self.kind = rt, builder, subject_kind
        self.subject = rt.policy.subjects[subject_kind].dataset
        self.keyed = keyed_datasets(rt, subject_kind)
        self.archived = archived_links(rt, self.subject, builder.keys.get(self.subject, ""))

    def columns(self) -> list[str]:
        """The subject columns the keyed datasets' templates name."""
        names: dict[str, None] = {}
        for name in self.keyed:
            names.update((c, None) for c in template_fields(
                self.rt.policy.datasets[name].per_subject[self.kind]))
        return list(names)

    def keys_of(self, name: str, subjects: Sequence[SubjectRow]) -> dict[str, list[str]]:
        """Each subject's keys (or objects) in a keyed dataset, from one listing."""
        rows = [(mark, dict(row)) for mark, row in subjects]
        return self.keyed[name].keys_by_subject(name, self.kind, rows)

    def remove_keys(self, name: str, found: Mapping[str, list[str]], holds: HoldScopes,
                    *, delete: bool, dry: bool = False) -> tuple[Counts, Counts]:
        """Remove the keys no hold keeps (`delete`; else keep them all): (removed, held)
        per subject. Call under the hold gate, with the holds read inside it. `dry`:
        count what would be removed, change nothing."""
        handler = self.keyed[name]
        held_key = handler.held_keys(name, holds)
        removed: Counts = {}
        held: Counts = {}
        for mark, keys in found.items():
            free = [k for k in keys if not held_key(k)]
            held[mark] = len(keys) - len(free)
            if not delete:
                removed[mark] = 0
            else:
                removed[mark] = len(free) if dry else handler.remove(name, free)
        return removed, held

    def remove_archived(self, name: str, column: str, owners: Mapping[str, str],
                        holds: HoldScopes, *, dry: bool = False) -> Counts:
        """See `remove_archived`."""
        return remove_archived(self.rt, name, column, owners, holds, dry=dry)

    def shred(self, keys: Sequence[Value]) -> list[Value]:
        """Destroy these subjects' data keys (call under the hold gate, held ones left
        out); the subjects whose key existed."""
        now = self.rt.clock.now()
        store = self.rt.subject_keys()
        return [key for key in keys if store.shred(self.kind, key, now)]
