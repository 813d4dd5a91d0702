"""Evidence beside each retention promise on the trust pages (`lethe docs --evidence`).

For every rule the pages state: when a run last verified it, how old its oldest row
nothing keeps is against the limit (live, from the store), and how long rows outlived
the limit before runs removed them over the last 30 days (median and longest, from run
records). Read from lethe's own records and the stores at the moment the pages are made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from lethe.control.history import runs_between
from lethe.reports.ages import data_ages
from lethe.reports.lag import deletion_lags
from lethe.runtime import Runtime

WINDOW = timedelta(days=30)
DAY = 86400.0

RuleKey = tuple[str, int | None]  # dataset, rule (None: the purge of soft-deleted rows)


@dataclass(frozen=True)
class RuleEvidence:
    last_verified: datetime | None  # the clock of the last run that verified the rule
    oldest_days: float | None  # the oldest row nothing keeps; None: none, or not measured
    limit_days: float | None
    median_lag_hours: float | None  # over the runs of the last 30 days that found due rows
    max_lag_hours: float | None
    measured: bool = True  # False: the store did not answer when the ages were read

    def text(self) -> str:
        """One line for the page: what backs the promise, as of when it was made."""
        parts = [f"last verified {self.last_verified:%d %B %Y}" if self.last_verified
                 else "not verified by a run in the last 30 days"]
        if not self.measured:
            parts.append("oldest record not measured (the store did not answer)")
        elif self.oldest_days is not None and self.limit_days:
            parts.append(f"oldest record {self.oldest_days:,.0f} of {self.limit_days:,.0f} "
                         "days")
        elif self.limit_days:
            parts.append("no record older than the period")
        if self.max_lag_hours is not None and self.median_lag_hours is not None:
            parts.append(f"removed within {_hours(self.median_lag_hours)} of the end of "
                         f"its period (longest {_hours(self.max_lag_hours)}, last 30 days)")
        return "; ".join(parts)


def _hours(hours: float) -> str:
    return f"{hours / 24:,.1f} days" if hours >= 48 else f"{hours:,.1f} hours"


def rule_evidence(rt: Runtime) -> dict[RuleKey, RuleEvidence]:
    """Evidence for every SQL rule with a time column (and every purge)."""
    now = rt.clock.now()
    runs = runs_between(rt.control.engine, now - WINDOW, now + timedelta(seconds=1))
    verified: dict[RuleKey, datetime] = {}
    for run in runs:
        for a in run.actions:
            if a.parent is None and a.verified:
                key = (a.dataset, a.rule)
                verified[key] = max(verified.get(key, run.now), run.now)
    lags = {(line.dataset, line.rule): line for line in deletion_lags(runs)}
    found: dict[RuleKey, RuleEvidence] = {}
    for reading in data_ages(rt):
        key = (reading.dataset, reading.rule)
        cutoff = reading.limit.before(now)
        limit = None if cutoff is None else (now - cutoff).total_seconds() / DAY
        oldest = None if reading.oldest is None or reading.error else \
            max(0.0, (now - reading.oldest).total_seconds() / DAY)
        lag = lags.get(key)
        found[key] = RuleEvidence(verified.get(key), oldest, limit,
                                  None if lag is None else lag.median_hours,
                                  None if lag is None else lag.max_hours,
                                  measured=reading.error is None)
    return found


def encryption_evidence(rt: Runtime) -> dict[str, tuple[str, ...]]:
    """Dataset -> its columns declared encrypted in which `check` finds every stored
    value encrypted (what the trust pages may call encrypted at rest)."""
    from lethe.governance.check import plaintext_fields  # reads every declared column
    from lethe.policy.encrypted import encrypted_fields

    failing = {f.path for f in plaintext_fields(rt.catalog)}
    found: dict[str, tuple[str, ...]] = {}
    for name in rt.catalog.sql_datasets():
        ok = tuple(c for c in encrypted_fields(rt.policy, name)
                   if f"datasets.{name}.fields.{c}" not in failing)
        if ok:
            found[name] = ok
    return found
