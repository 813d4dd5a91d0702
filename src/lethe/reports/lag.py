"""Deletion lag: how long rows outlived their limit before a run removed them.

Each run records, per step, how long its oldest due row had been past its limit when it
planned the step (`lethe_run_actions.lag_seconds`): the longest any row it then deleted
had waited. Over a month's runs that gives, per rule, the typical (median) and the worst
(maximum) lag: the evidence behind "deleted within N days of the end of its period".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from lethe.control.history import RunRecord

HOUR = 3600.0


@dataclass(frozen=True)
class LagLine:
    dataset: str
    rule: int | None  # None: the purge of soft-deleted rows
    action: str
    runs: int  # runs of the month that removed due rows of this rule
    median_hours: float
    max_hours: float


def deletion_lags(runs: Sequence[RunRecord]) -> tuple[LagLine, ...]:
    """Per rule, over the runs that found due rows: the median and the longest lag."""
    found: dict[tuple[str, int | None, str], list[float]] = defaultdict(list)
    for run in runs:
        for a in run.actions:
            if a.parent is None and a.lag_seconds is not None:
                found[(a.dataset, a.rule, a.action)].append(a.lag_seconds)
    return tuple(LagLine(dataset, rule, action, len(lags), round(median(lags) / HOUR, 2),
                         round(max(lags) / HOUR, 2))
                 for (dataset, rule, action), lags in sorted(
                     found.items(), key=lambda item: (item[0][0], item[0][1] is None,
                                                      item[0][1] or 0)))
