"""Which schedule occurrences are due, and the units of work each one holds.

A schedule (`cron` + `datasets`) is due at its latest occurrence at or before now; a
worker that was down for a week runs that one occurrence, not seven (a run judged at
now covers everything older). Each dataset of an occurrence is one unit of work, so
several workers share a schedule; a dataset waits for the units of the datasets that
must go before it (children before parents).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from lethe.policy.model import Policy


@dataclass(frozen=True)
class Unit:
    schedule: str
    occurrence: datetime
    dataset: str
    after: tuple[str, ...]  # units (names) that must be done first

    @property
    def name(self) -> str:
        return unit_name(self.schedule, self.occurrence, self.dataset)


def unit_name(schedule: str, occurrence: datetime, dataset: str) -> str:
    return f"schedule:{schedule}:{occurrence.isoformat()}:{dataset}"


def latest_occurrence(cron: str, now: datetime) -> datetime:
    """The schedule's latest firing at or before `now`."""
    found: datetime = croniter(cron, now + timedelta(microseconds=1)).get_prev(datetime)
    return found


def schedule_units(policy: Policy, order: Sequence[str],
                   dependencies: Sequence[tuple[str, str]], now: datetime) -> list[Unit]:
    """Every dataset unit of every schedule's current occurrence, in `order` (children
    first); `dependencies` are (child, parent) pairs."""
    position = {name: i for i, name in enumerate(order)}
    # Only edges that agree with `order`: foreign keys both ways between two datasets
    # would otherwise make each wait for the other forever (`blocked` keeps it safe).
    edges = [(c, p) for c, p in dependencies
             if c in position and p in position and position[c] < position[p]]
    units = []
    for name, schedule in policy.schedules.items():
        chosen = set(policy.datasets) if schedule.datasets == "all" else set(schedule.datasets)
        occurrence = latest_occurrence(schedule.cron, now)
        for dataset in order:
            if dataset not in chosen:
                continue
            first = tuple(unit_name(name, occurrence, child) for child, parent in edges
                          if parent == dataset and child in chosen and child != dataset)
            units.append(Unit(name, occurrence, dataset, first))
    return units
