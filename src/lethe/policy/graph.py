"""The belongs_to graph: parents, children, cycles and the order work must happen in.

Children are handled before parents everywhere (retention order, cascades, holds),
so this order is computed once and reused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lethe.policy.model import Dataset


@dataclass(frozen=True)
class Link:
    """`child.column` references `parent`'s key."""

    child: str
    parent: str
    column: str


@dataclass(frozen=True)
class Graph:
    links: tuple[Link, ...]
    order: tuple[str, ...]  # children before parents

    def parents(self, dataset: str) -> tuple[Link, ...]:
        return tuple(link for link in self.links if link.child == dataset)

    def children(self, dataset: str) -> tuple[Link, ...]:
        return tuple(link for link in self.links if link.parent == dataset)


def find_cycle(datasets: Mapping[str, Dataset]) -> list[str] | None:
    """A list of dataset names forming a belongs_to cycle, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for parent in datasets[name].belongs_to:
            if state.get(parent) == 1:
                return [*stack[stack.index(parent):], parent]
            if parent not in state and (cycle := visit(parent)):
                return cycle
        stack.pop()
        state[name] = 2
        return None

    for name in datasets:
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def build_graph(datasets: Mapping[str, Dataset]) -> Graph:
    """Order datasets so that every child precedes its parents; assumes no cycle."""
    links = tuple(Link(child, parent, column) for child, ds in datasets.items()
                  for parent, column in ds.belongs_to.items())
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name in placed:
            return
        placed.add(name)
        for link in links:
            if link.parent == name:
                place(link.child)
        order.append(name)

    for name in datasets:
        place(name)
    return Graph(links, tuple(order))


def children_first(names: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """`names` reordered so that every `(child, parent)` edge puts the child first.

    Otherwise the given order is kept; an edge that would close a cycle is ignored
    (the order then follows the names' own order for that pair).
    """
    chosen = set(names)
    children: dict[str, list[str]] = {}
    for child, parent in edges:
        if child in chosen and parent in chosen and child != parent:
            children.setdefault(parent, []).append(child)
    order: list[str] = []
    state: dict[str, int] = {}

    def place(name: str) -> None:
        state[name] = 1
        for child in sorted(children.get(name, []), key=names.index):
            if child not in state:
                place(child)
        state[name] = 2
        order.append(name)

    for name in names:
        if name not in state:
            place(name)
    return order
