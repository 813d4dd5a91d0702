"""How old the oldest data is, per dataset and rule, read live from the stores.

One MIN aggregate per rule through the store layer (no rows leave the database): the
oldest row a rule still governs and nothing keeps, against the rule's limit. Rows past
the limit that a hold or a foreign key keeps are counted apart, with that reason: they
are exceptions the policy allows, not breaches. A row older than its limit plus the
allowed lag (`grace`: the policy's `deletion_sla`, else the longest interval of the
schedules that run the dataset) is one a run has not reached, or a rule not enforced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from croniter import croniter

from lethe.engine.plan import blocked_by, builder_for
from lethe.engine.steps import (
    Step,
    StepBuilder,
    identifying,
    not_soft_deleted,
    soft_deleted,
    time_column,
)
from lethe.errors import LetheError
from lethe.holds import HoldScopes
from lethe.policy.conditions import governed_by
from lethe.policy.durations import Duration
from lethe.policy.model import Dataset, Policy
from lethe.runtime import Runtime
from lethe.stores.base import FALSE, Condition, Older, all_of, negate


@dataclass(frozen=True)
class AgeReading:
    """The oldest governed row of one rule (or of the soft-deleted rows awaiting purge)."""

    dataset: str
    rule: int | None  # None: the purge of soft-deleted rows
    action: str
    column: str
    limit: Duration
    oldest: datetime | None  # None: no governed row (that nothing keeps)
    error: str | None = None  # the store could not answer (named, never a value)
    # rows past the limit kept for a stated reason: ("held by a legal hold", n),
    # ("blocked: <foreign key>", n)
    kept: tuple[tuple[str, int], ...] = ()
    grace: timedelta = timedelta(0)  # lag allowed past the limit before it is a breach


def governed(policy: Policy, ds: Dataset, step: Step) -> Condition:
    """Rows the step still applies to: a rule's own, not yet soft-deleted or anonymized;
    a purge's, the soft-deleted rows."""
    if step.rule is None:
        assert ds.soft_delete is not None  # a dataset has a purge step only with it
        return soft_deleted(ds.soft_delete)
    index = step.rule
    rule = ds.retention[index]
    parts = [governed_by(ds, index, policy)]
    if rule.action == "soft-delete" and ds.soft_delete:
        parts.append(not_soft_deleted(ds.soft_delete))
    if rule.action == "anonymize":
        parts.append(identifying(ds))
    return all_of(*parts)


def allowed_lag(policy: Policy, name: str, now: datetime) -> timedelta:
    """How long past its limit a row may live before that is a breach: the policy's
    `deletion_sla`, else the longest interval between runs of the schedules that cover
    the dataset (a row due just after a run waits for the next), else none."""
    if policy.deletion_sla is not None:
        cutoff = policy.deletion_sla.before(now)
        return timedelta(0) if cutoff is None else now - cutoff
    lags = []
    for schedule in policy.schedules.values():
        if schedule.datasets == "all" or name in schedule.datasets:
            fires = croniter(schedule.cron, now)
            first = fires.get_next(datetime)
            lags.append(fires.get_next(datetime) - first)
    return max(lags, default=timedelta(0))


def data_ages(rt: Runtime) -> list[AgeReading]:
    """Every SQL dataset's rules with a time column, in policy order."""
    readings: list[AgeReading] = []
    now = rt.clock.now()
    builder = builder_for(rt, now, periods=True)
    holds = rt.hold_scopes(builder)
    for name in rt.catalog.sql_datasets():
        ds = rt.policy.datasets[name]
        grace = allowed_lag(rt.policy, name, now)
        for step in builder.own_steps(name):  # its rules, then its purge
            clock = time_column(ds, step)
            if clock is None:
                continue
            column, limit = clock
            reading = AgeReading(name, step.rule, step.action, column, limit, None,
                                 grace=grace)
            try:
                readings.append(_measure(rt, builder, holds, step, reading,
                                         governed(rt.policy, ds, step), now))
            except LetheError as exc:
                readings.append(replace(reading, error=str(exc)))
    return readings


def _measure(rt: Runtime, builder: StepBuilder, holds: HoldScopes, step: Step,
             reading: AgeReading, where: Condition, now: datetime) -> AgeReading:
    """The oldest row nothing keeps, and the rows past the limit kept, with why."""
    store = rt.catalog.store_of(step.dataset)
    table = rt.policy.datasets[step.dataset].table or ""
    held, blocked = builder.held(step, holds), builder.blocked(step)
    oldest = store.oldest(table, reading.column,
                          all_of(where, negate(held), negate(blocked)))
    cutoff = reading.limit.before(now)
    kept: list[tuple[str, int]] = []
    if cutoff is not None:
        past = all_of(where, Older(reading.column, cutoff))
        if held != FALSE and (rows := store.count(table, all_of(past, held))):
            kept.append(("held by a legal hold", rows))
        if blocked != FALSE:
            free = all_of(past, negate(held))
            rows = store.count(table, all_of(free, blocked))
            if rows:
                kept += [(f"blocked: {why}", n) for why, n in blocked_by(
                    store, table, free, builder.blockers(step.dataset), rows)]
    return replace(reading, oldest=oldest, kept=tuple(kept))
