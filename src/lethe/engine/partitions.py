"""Partition-aware retention (PostgreSQL): drop whole partitions instead of deleting rows.

When a dataset's table is range-partitioned on its rule's `after` column, a partition
whose upper bound is at or before the cutoff holds only rows past retention; detaching
and dropping it costs the same for ten rows or ten million, and leaves no dead tuples
behind. It is done only where it cannot change what the rows path would do: one rule,
no `when`, deleting, no dataset belonging to this one and no foreign key into it (those
rows would need cascades or must stay), no soft delete; and never while a held row is in
the partition (checked again inside the dropping transaction, after the partition is
detached and locked). Anything else, and rows in partitions only partly past
retention, go through the row batches as usual.
"""

from __future__ import annotations

from lethe.engine.runtime import Runtime
from lethe.engine.steps import Step, StepBuilder
from lethe.errors import StoreError
from lethe.holds import HoldScopes
from lethe.stores.base import FALSE, Partition


def eligible(rt: Runtime, builder: StepBuilder, step: Step) -> bool:
    ds = rt.policy.datasets[step.dataset]
    return (step.action == "delete" and step.rule == 0 and len(ds.retention) == 1
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
    cutoff = rule.keep.before(builder.now)
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


def drop_expired(rt: Runtime, builder: StepBuilder, step: Step) -> tuple[int, int]:
    """Drop every expired partition no hold reaches, each in its own transaction, the
    holds read after its detach; (partitions dropped, rows). Anything that goes wrong
    (a lock not granted in time, above all) leaves the rows to the row batches."""
    ds = rt.policy.datasets[step.dataset]
    try:
        expired = [p.name for p in expired_partitions(rt, builder, step)]
        if not expired:
            return 0, 0
        dropped = rt.catalog.store_of(step.dataset).drop_partitions(
            ds.table or "", expired,
            lambda: rt.hold_scopes(builder).held(step.dataset, cascading=True))
    except StoreError:
        return 0, 0
    return len(dropped), sum(dropped.values())
