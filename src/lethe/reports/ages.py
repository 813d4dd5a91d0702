"""How old the oldest data is, per dataset and rule, read live from the stores.

One MIN aggregate per rule through the store layer (no rows leave the database): the
oldest row a rule still governs, against the rule's limit. A row older than its limit
is one a hold keeps, a run has not reached yet, or a rule that is not being enforced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lethe.engine.steps import governed_by, identifying, not_soft_deleted, soft_deleted
from lethe.errors import LetheError
from lethe.policy.durations import Duration
from lethe.policy.model import Dataset
from lethe.runtime import Runtime
from lethe.stores.base import Condition, all_of


@dataclass(frozen=True)
class AgeReading:
    """The oldest governed row of one rule (or of the soft-deleted rows awaiting purge)."""

    dataset: str
    rule: int | None  # None: the purge of soft-deleted rows
    action: str
    column: str
    limit: Duration
    oldest: datetime | None  # None: no governed row
    error: str | None = None  # the store could not answer (named, never a value)


def governed(ds: Dataset, index: int) -> Condition:
    """Rows rule `index` still applies to: its own, not yet soft-deleted or anonymized."""
    rule = ds.retention[index]
    parts = [governed_by(ds, index)]
    if rule.action == "soft-delete" and ds.soft_delete:
        parts.append(not_soft_deleted(ds.soft_delete))
    if rule.action == "anonymize":
        parts.append(identifying(ds))
    return all_of(*parts)


def data_ages(rt: Runtime) -> list[AgeReading]:
    """Every SQL dataset's rules with a time column, in policy order."""
    readings: list[AgeReading] = []
    for name in rt.catalog.sql_datasets():
        ds = rt.policy.datasets[name]
        lines: list[tuple[int | None, str, str, Duration, Condition]] = [
            (i, r.action, r.after, r.keep, governed(ds, i))
            for i, r in enumerate(ds.retention) if r.after]
        if ds.soft_delete is not None:
            lines.append((None, "purge", ds.soft_delete.since, ds.soft_delete.recover_for,
                          soft_deleted(ds.soft_delete)))
        for rule, action, column, limit, where in lines:
            try:
                oldest = rt.catalog.store_of(name).oldest(ds.table or "", column, where)
            except LetheError as exc:
                readings.append(AgeReading(name, rule, action, column, limit, None, str(exc)))
                continue
            readings.append(AgeReading(name, rule, action, column, limit, oldest))
    return readings
