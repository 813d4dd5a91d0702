"""Partition-aware retention (PostgreSQL): drop whole partitions instead of deleting rows.

When a dataset's table is range-partitioned on its rule's `after` column, a partition
whose upper bound is at or before the cutoff holds only rows past retention; detaching
and dropping it costs about the same for ten rows or ten million, and leaves no dead
tuples behind. It is done only where it cannot change what the rows path would do: one
rule, no `when`, deleting or archiving, no dataset belonging to this one and no foreign
key into it (those rows would need cascades or must stay), no soft delete; and never
while a held row is in the partition (checked again inside the dropping transaction,
after the partition is detached and locked). Anything else, and rows in partitions only
partly past retention, go through the row batches as usual.

An archive rule archives the partition first, inside the same transaction as its drop:
the rows go to verified chunks whose manifests name the partition, so a run killed at
any instant leaves either the partition (its chunks are orphans `settle` removes) or the
chunks (the drop committed; `settle` marks them done).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from lethe.engine.archive import ArchiveSink
from lethe.engine.steps import Step, StepBuilder
from lethe.errors import LetheError, StoreError
from lethe.holds import HoldScopes
from lethe.policy.periods import longest
from lethe.runtime import Runtime
from lethe.stores.base import FALSE, Condition, Journal, Partition

PARTITION_ACTIONS = ("delete", "archive")
HeldReader = Callable[[], Condition]  # the holds, read afresh at each call


@dataclass(frozen=True)
class Dropped:
    """What the partition path did for one step."""

    partitions: tuple[str, ...] = ()
    rows: int = 0
    estimated: bool = False  # `rows` includes the planner's estimate for some partition
    stopped: str | None = None  # why the partition path stopped early (rows went in batches)


def eligible(rt: Runtime, builder: StepBuilder, step: Step) -> bool:
    ds = rt.policy.datasets[step.dataset]
    return (step.action in PARTITION_ACTIONS and step.rule == 0 and len(ds.retention) == 1
            and not ds.retention[0].when and ds.soft_delete is None
            and not builder.references.get(step.dataset)
            and not any(step.dataset in other.belongs_to
                        for other in rt.policy.datasets.values()))


def expired_partitions(rt: Runtime, builder: StepBuilder, step: Step) -> list[Partition]:
    """Partitions whose every row is past retention (held or not)."""
    if not eligible(rt, builder, step):
        return []
    ds = rt.policy.datasets[step.dataset]
    rule = ds.retention[0]
    # a period from data: only partitions past the longest any row may be kept
    cutoff = longest(rule.keep).before(builder.now)
    if cutoff is None:
        return []
    found = rt.catalog.store_of(step.dataset).partitions(ds.table or "", rule.after)
    return [p for p in found if p.upper is not None and p.upper <= cutoff]


def droppable(rt: Runtime, builder: StepBuilder, holds: HoldScopes,
              step: Step) -> list[Partition]:
    """The expired partitions no hold reaches into."""
    held = holds.held(step.dataset, cascading=True)
    ds = rt.policy.datasets[step.dataset]
    store = rt.catalog.store_of(step.dataset)
    return [p for p in expired_partitions(rt, builder, step)
            if held == FALSE or not store.count_in_partition(ds.table or "", p.name, held)]


def drop_expired(rt: Runtime, builder: StepBuilder, step: Step,
                 sink: ArchiveSink | None = None, chunk_rows: int = 10_000,
                 journal: Journal | None = None) -> Dropped:
    """Drop (archive first, given a sink) every expired partition no hold reaches, each
    in its own transaction, the holds read after its detach; `journal` is told each
    partition's rows before its drop commits. Anything that goes wrong
    (a lock not granted in time, above all) leaves the rows to the row batches."""
    ds = rt.policy.datasets[step.dataset]

    def held() -> Condition:
        return rt.hold_scopes(builder).held(step.dataset, cascading=True)

    try:
        expired = [p.name for p in expired_partitions(rt, builder, step)]
        if not expired:
            return Dropped()
        if sink is not None:
            return _archive(rt, step, expired, held, sink, chunk_rows, journal)
        store = rt.catalog.store_of(step.dataset)
        dropped: dict[str, tuple[int, bool]] = {}
        stopped = None
        for name in expired:  # one partition per turn of the hold gate
            with rt.hold_gate.shared():
                drops = store.drop_partitions(ds.table or "", [name], held,
                                              estimate=ds.partitions.count == "estimate",
                                              journal=journal)
            dropped.update(drops.dropped)
            if drops.stopped:
                stopped = drops.stopped
                break
    except StoreError as exc:
        return Dropped(stopped=exc.message)
    return Dropped(tuple(dropped), sum(rows for rows, _ in dropped.values()),
                   any(estimated for _, estimated in dropped.values()), stopped)


def _archive(rt: Runtime, step: Step, names: list[str], held: HeldReader,
             sink: ArchiveSink, chunk_rows: int, journal: Journal | None) -> Dropped:
    """Archive and drop each partition; stop at the first that fails, after removing the
    chunks it left (the row batches archive those rows next, so no chunk of them may
    survive: a failure to remove one ends the step instead)."""
    table = rt.policy.datasets[step.dataset].table or ""
    store = rt.catalog.store_of(step.dataset)
    done: list[str] = []
    rows = 0
    stopped = None
    for name in names:
        try:
            with rt.hold_gate.shared():  # holds read after the detach, then the drop commits
                archived = store.archive_partition(table, name, held,
                                                   partial(sink.write, partition=name),
                                                   chunk_rows, journal)
        except StoreError as exc:
            _abandon(sink)
            stopped = exc.message
            break
        if archived is None:  # a held row inside: the partition stays, its chunks go
            _abandon(sink)
            continue
        sink.committed()
        done.append(name)
        rows += archived
    return Dropped(tuple(done), rows, stopped=stopped)


def _abandon(sink: ArchiveSink) -> None:
    try:
        sink.abandon()
    except StoreError as exc:
        raise LetheError(f"archive chunks of a partition kept in the table could not be "
                         f"removed ({exc}); the next run removes them first",
                         path=f"datasets.{sink.dataset}") from None
