"""Retention periods workspaces choose through the API, within the policy's bounds.

A rule `keep: {default: 90d, min: 1d, max: 7y}` (no `from:`) on a dataset with a
`workspace:` column lets each workspace choose its period for that dataset; the plan
and run that start afterwards apply it (lethe.engine.steps), the trust pages state the
bounds. Each choice is audited in the same transaction as it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lethe.audit.events import RetentionPeriodSet
from lethe.control.overrides import RetentionOverrides
from lethe.control.tx import transaction
from lethe.errors import NotFound, UsageError
from lethe.policy.durations import parse_duration
from lethe.policy.periods import KeepFrom
from lethe.runtime import Runtime


@dataclass(frozen=True)
class ChosenPeriod:
    """A dataset whose period a workspace may choose, and what it chose."""

    dataset: str
    bounds: KeepFrom
    keep: str | None  # None: the default applies
    applies: str  # what a run applies now: the choice (or default) within the bounds

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "keep": self.keep, "applies": self.applies,
                "default": str(self.bounds.default), "min": str(self.bounds.min),
                "max": str(self.bounds.max)}


def _bounds(rt: Runtime, dataset: str) -> KeepFrom:
    """The bounds of the dataset's rule workspaces may set (one per dataset)."""
    ds = rt.policy.datasets.get(dataset)
    if ds is None:
        raise NotFound(f"unknown dataset {dataset!r}", path="dataset")
    if ds.workspace_period is not None:
        return ds.workspace_period
    raise UsageError(f"dataset {dataset!r} has no period a workspace may choose (its rule "
                     "would say keep: {default, min, max})", path="dataset")


def _chosen(rt: Runtime, dataset: str, bounds: KeepFrom, keep: str | None) -> ChosenPeriod:
    period = bounds.default if keep is None else parse_duration(keep)
    return ChosenPeriod(dataset, bounds, keep, str(bounds.clamped(period, rt.clock.now())))


def retention_periods(rt: Runtime, workspace: str) -> list[ChosenPeriod]:
    """Every dataset whose period a workspace may choose, with its choice."""
    chosen = {o.dataset: o.keep for o in
              RetentionOverrides(rt.control.engine).of_workspace(workspace)}
    return [_chosen(rt, name, ds.workspace_period, chosen.get(name))
            for name, ds in rt.policy.datasets.items() if ds.workspace_period is not None]


def set_retention_period(rt: Runtime, workspace: str, dataset: str,
                         keep: str | None) -> ChosenPeriod:
    """Choose the workspace's period for the dataset (None: back to the default),
    within the rule's bounds, audited; from the next plan on."""
    bounds = _bounds(rt, dataset)
    if keep is not None:
        try:
            period = parse_duration(keep)
        except ValueError as exc:
            raise UsageError(str(exc), path="keep") from None
        if not bounds.allows(period, rt.clock.now()):
            raise UsageError(f"keep must be between {bounds.min} and {bounds.max}",
                             path="keep")
        keep = str(period)
    with transaction(rt.control.engine, "setting a retention period") as conn:
        RetentionOverrides(rt.control.engine).set(workspace, dataset, keep, rt.audit.actor,
                                                  conn=conn)
        rt.audit.append_many([RetentionPeriodSet(workspace, dataset, keep)], conn=conn)
    return _chosen(rt, dataset, bounds, keep)


__all__ = ["ChosenPeriod", "retention_periods", "set_retention_period"]
