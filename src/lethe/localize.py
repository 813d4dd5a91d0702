"""Conditions that reach across stores, made local before a store sees them.

A child in one database may belong to a parent in another. A store can only evaluate
its own tables, so an `Exists` naming another store is replaced by an `In` over the
link values that store returns. The values are read fresh every time a condition is
localized (holds, above all, must be current).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from lethe.stores.base import (
    FALSE,
    And,
    BatchResult,
    Cascade,
    Condition,
    Exists,
    In,
    Journal,
    Not,
    Or,
    Partition,
    PartitionDrops,
    RowStore,
    Sweep,
    Value,
)

StoreOf = Callable[[str], RowStore]


def localize(cond: Condition, here: str, store_of: StoreOf) -> Condition:
    match cond:
        case Exists(table, inner, outer, where, store) if store is not None and store != here:
            values = store_of(store).values(table, inner, localize(where, store, store_of))
            return In(outer, tuple(values)) if values else FALSE
        case Exists(table, inner, outer, where, store):
            return Exists(table, inner, outer, localize(where, here, store_of), store)
        case And(parts):
            return And(tuple(localize(p, here, store_of) for p in parts))
        case Or(parts):
            return Or(tuple(localize(p, here, store_of) for p in parts))
        case Not(part):
            return Not(localize(part, here, store_of))
    return cond


@dataclass
class LocalStore:
    """A store that first resolves every condition's references to other stores."""

    inner: RowStore
    store_of: StoreOf

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dialect(self) -> str:
        return self.inner.dialect

    def _local(self, cond: Condition) -> Condition:
        return localize(cond, self.inner.name, self.store_of)

    def tables(self) -> Any:
        return self.inner.tables()

    def count(self, table: str, where: Condition) -> int:
        return self.inner.count(table, self._local(where))

    def select_settled(self, table: str, columns: Sequence[str],
                       where: Condition) -> list[tuple[Any, ...]]:
        return self.inner.select_settled(table, columns, self._local(where))

    def rows(self, table: str, where: Condition) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        return self.inner.rows(table, self._local(where))

    def values(self, table: str, column: str, where: Condition) -> list[Any]:
        return self.inner.values(table, column, self._local(where))

    def select(self, table: str, columns: Sequence[str],
               where: Condition) -> list[tuple[Any, ...]]:
        return self.inner.select(table, columns, self._local(where))

    def select_at_most(self, table: str, columns: Sequence[str],
                       most: int) -> list[tuple[Any, ...]] | None:
        return self.inner.select_at_most(table, columns, most)

    def count_by(self, table: str, column: str, where: Condition) -> dict[Value, int]:
        return self.inner.count_by(table, column, self._local(where))

    def count_each(self, queries: Sequence[tuple[str, Condition]]) -> list[int]:
        return self.inner.count_each([(t, self._local(w)) for t, w in queries])

    def oldest(self, table: str, column: str, where: Condition) -> datetime | None:
        return self.inner.oldest(table, column, self._local(where))

    def partitions(self, table: str, column: str) -> list[Partition]:
        return self.inner.partitions(table, column)

    def count_in_partition(self, table: str, partition: str, where: Condition) -> int:
        return self.inner.count_in_partition(table, partition, self._local(where))

    def drop_partitions(self, table: str, partitions: Sequence[str],
                        held: Callable[[], Condition], *, estimate: bool = False,
                        journal: Journal | None = None) -> PartitionDrops:
        return self.inner.drop_partitions(table, partitions, lambda: self._local(held()),
                                          estimate=estimate, journal=journal)

    def archive_partition(self, table: str, partition: str, held: Callable[[], Condition],
                          write: Callable[[tuple[str, ...], list[tuple[Any, ...]]], None],
                          chunk_rows: int, journal: Journal | None = None) -> int | None:
        return self.inner.archive_partition(table, partition, lambda: self._local(held()),
                                            write, chunk_rows, journal)

    def count_in_partition_settled(self, table: str, partition: str, where: Condition) -> int:
        return self.inner.count_in_partition_settled(table, partition, self._local(where))

    def insert_missing(self, table: str, key: str,
                       rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        return self.inner.insert_missing(table, key, rows)

    def flush(self) -> None:
        self.inner.flush()

    def sweep_batch(self, sweep: Sweep, after: Value | None, limit: int) -> BatchResult:
        return self.inner.sweep_batch(self._local_sweep(sweep), after, limit)

    def _local_sweep(self, sweep: Sweep) -> Sweep:
        def local_cascade(c: Cascade) -> Cascade:
            return replace(c, where=self._local(c.where),
                           children=tuple(local_cascade(k) for k in c.children))

        return replace(sweep, where=self._local(sweep.where),
                       cascades=tuple(local_cascade(c) for c in sweep.cascades))

    def first_batches(self, sweeps: Sequence[Sweep],
                      limit: int) -> list[BatchResult] | None:
        return self.inner.first_batches([self._local_sweep(s) for s in sweeps], limit)

    def close(self) -> None:
        self.inner.close()
