"""Holds compiled into row conditions: the condition that keeps held rows untouched.

A hold reaches a row three ways: directly (its dataset, its workspace column, or a
subject identity), downward (the row belongs to a held row through belongs_to, or a held
row points at it through `referenced_by`), and upward (deleting the row would cascade
into a held row, so it must stay too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from lethe.control.store import Hold
from lethe.policy.graph import Graph, Link
from lethe.policy.model import Policy
from lethe.stores.base import (
    FALSE,
    TRUE,
    Condition,
    Exists,
    In,
    Value,
    any_of,
)

CASCADING = ("delete", "anonymize")


@dataclass(frozen=True)
class HoldScopes:
    """Holds compiled into the conditions each dataset needs."""

    policy: Policy
    graph: Graph
    keys: Mapping[str, str]
    holds: Sequence[Hold]
    # subject dataset -> the keys of its rows that subject holds name, when known: a
    # child's rows are then held by `link IN (keys)` instead of a lookup of every held
    # identity in the subject table for every statement (see Runtime.hold_scopes)
    resolved: Callable[[str], tuple[Value, ...] | None] | None = None

    @cached_property
    def _values(self) -> Mapping[tuple[str, str | None], tuple[str, ...]]:
        """(scope kind, subject kind) -> the values held, indexed once: every condition
        asks, and a sweep builds its conditions per batch over thousands of holds."""
        found: dict[tuple[str, str | None], list[str]] = {}
        for h in self.holds:
            kind = h.subject_kind if h.scope_kind == "subject" else None
            found.setdefault((h.scope_kind, kind), []).append(h.scope_value)
        return {scope: tuple(values) for scope, values in found.items()}

    def dataset_held(self, dataset: str) -> bool:
        """Is the whole dataset under a hold (every row, object and key of it)?"""
        return dataset in self._values.get(("dataset", None), ())

    def workspaces(self) -> tuple[str, ...]:
        """Workspaces under a hold."""
        return self._values.get(("workspace", None), ())

    def subject_values(self, subject_kind: str) -> tuple[str, ...]:
        """The keys named by subject holds on this kind of subject (any identity)."""
        return self._values.get(("subject", subject_kind), ())

    def direct(self, dataset: str, *, identities: bool = True) -> Condition:
        """Rows a hold names itself: its dataset, its workspace, its subject identity.

        One `In` per identity column over every held value (not one test per hold): the
        store binds the list as one array or table of keys, so ten thousand holds cost a
        lookup per row, not an expression per hold.
        """
        ds = self.policy.datasets[dataset]
        if self.dataset_held(dataset):
            return TRUE
        parts: list[Condition] = []
        workspaces = self.workspaces()
        if workspaces and ds.workspace:
            parts.append(In(ds.workspace, workspaces))
        if identities:
            parts.append(self.named(dataset))
        return any_of(*parts)

    def named(self, dataset: str) -> Condition:
        """Rows of a subject dataset that subject holds name by one of its identities."""
        parts: list[Condition] = []
        for kind, subject in self.policy.subjects.items():
            values = self.subject_values(kind) if subject.dataset == dataset else ()
            parts += [In(identity, values) for identity in subject.identities if values]
        return any_of(*parts)

    def subject_keys(self, dataset: str) -> tuple[Value, ...] | None:
        """The keys of the dataset's rows that subject holds name, if resolved."""
        if self.resolved is None or not any(
                s.dataset == dataset and self.subject_values(k)
                for k, s in self.policy.subjects.items()):
            return None
        return self.resolved(dataset)

    def down(self, dataset: str, skip: Link | None = None) -> Condition:
        """Held directly, through any parent (except along `skip`), or, for a
        `referenced_by` dataset, through a held row pointing at it."""
        return any_of(self.direct(dataset), *self._above(dataset, skip),
                      *self._referrers(dataset))

    def _referrers(self, dataset: str) -> list[Condition]:
        """Rows a held row points at (an address a held customer row names)."""
        parts: list[Condition] = []
        for referrer, column in self.policy.datasets[dataset].referenced_by.items():
            held = self.down(referrer)
            other = self.policy.datasets[referrer]
            if held != FALSE and referrer in self.keys:
                parts.append(Exists(other.table or "", column, self.keys[dataset], held,
                                    other.store))
        return parts

    def _above(self, dataset: str, skip: Link | None = None) -> list[Condition]:
        """Held through a parent (except along `skip`)."""
        parts: list[Condition] = []
        for link in self.graph.parents(dataset):
            if link == skip:
                continue
            parent = self.policy.datasets[link.parent]
            keys = self.subject_keys(link.parent)
            if keys is not None:  # the subject holds, as the parent keys they name
                if keys:
                    parts.append(In(link.column, keys))
                above = any_of(self.direct(link.parent, identities=False),
                               *self._above(link.parent))
            else:
                above = self.down(link.parent)
            if above != FALSE:
                parts.append(Exists(parent.table or "", self.keys[link.parent], link.column,
                                    above, parent.store))
        return parts

    def up(self, dataset: str) -> Condition:
        """Deleting this row would cascade into a held row."""
        parts: list[Condition] = []
        for link in self.graph.children(dataset):
            child = self.policy.datasets[link.child]
            if child.erasure not in CASCADING:
                continue
            below = self.down(link.child, skip=link)
            if child.erasure == "delete":
                below = any_of(below, self.up(link.child))
            if below != FALSE:
                parts.append(Exists(child.table or "", link.column, self.keys[dataset], below,
                                    child.store))
        return any_of(*parts)

    def held(self, dataset: str, *, cascading: bool) -> Condition:
        """Rows of `dataset` that an action must skip; `cascading` when it deletes."""
        if not self.holds:
            return FALSE
        return any_of(self.down(dataset), self.up(dataset)) if cascading else self.down(dataset)
