"""What a monthly report is built from, read once: lethe's own records and the stores.

Everything here reads; nothing writes (not even an audit entry: a report is a view of
the evidence, and producing it must not change what it reports). The report itself is
assembled from these values by pure code in `monthly.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from lethe.audit.chain import Verdict
from lethe.audit.events import RetentionBatch
from lethe.audit.log import timestamp
from lethe.control.history import RunRecord, runs_between
from lethe.control.requests import RequestRecord, RequestStore
from lethe.control.store import Hold
from lethe.engine.plan import chosen_periods
from lethe.holds import shown_scope
from lethe.reports.ages import AgeReading, data_ages
from lethe.reports.period import Month
from lethe.runtime import Runtime

StepKey = tuple[int, str, int | None, str, str | None]  # run, dataset, rule, action, parent


@dataclass(frozen=True)
class Sources:
    organization: str
    month: Month
    generated_at: datetime
    classes: dict[str, str]  # dataset -> classification
    runs: tuple[RunRecord, ...]
    holds: tuple[Hold, ...]
    hold_scopes: dict[int, str]  # hold id -> scope as shown (a subject only as fingerprint)
    requests: tuple[RequestRecord, ...]
    ages: tuple[AgeReading, ...]
    audit: Verdict
    evidence: dict[StepKey, int]  # retention audit entries of the month's runs: rows done
    # datasets whose period each workspace may choose: dataset -> ((default, min, max),
    # period -> workspaces that chose it, as the report is made; choices made in the month)
    chosen: dict[str, tuple[tuple[str, str, str], dict[str, int], int]] = \
        field(default_factory=dict)


def gather(rt: Runtime, month: Month) -> Sources:
    runs = runs_between(rt.control.engine, month.start, month.end)
    holds = rt.control.holds(include_released=True)
    return Sources(
        organization=rt.policy.organization, month=month, generated_at=rt.clock.now(),
        classes={name: ds.class_ for name, ds in rt.policy.datasets.items()},
        runs=tuple(runs), holds=tuple(holds),
        hold_scopes={h.id: shown_scope(rt.audit, h) for h in holds},
        requests=tuple(RequestStore(rt.control.engine).list()),
        ages=tuple(data_ages(rt)), audit=rt.audit.verify(), evidence=_evidence(rt, runs),
        chosen=_chosen(rt, month))


def _chosen(rt: Runtime, month: Month
            ) -> dict[str, tuple[tuple[str, str, str], dict[str, int], int]]:
    """Each choosable dataset's bounds, how many workspaces chose each period (within
    the bounds, as a run applies it) and how many choices the month's audit log records."""
    choosable = {n: ds.workspace_period for n, ds in rt.policy.datasets.items()
                 if ds.workspace_period is not None}
    if not choosable:
        return {}
    periods = chosen_periods(rt)
    changed: dict[str, int] = {}
    for entry in rt.audit.entries(action="workspace.retention", since=timestamp(month.start),
                                  until=timestamp(month.end)):
        name = str(json.loads(entry.details).get("dataset"))
        changed[name] = changed.get(name, 0) + 1
    found = {}
    for name, bounds in choosable.items():
        counts: dict[str, int] = {}
        for period in periods.get(name, {}).values():
            counts[str(period)] = counts.get(str(period), 0) + 1
        found[name] = ((str(bounds.default), str(bounds.min), str(bounds.max)), counts,
                       changed.get(name, 0))
    return found


def _evidence(rt: Runtime, runs: list[RunRecord]) -> dict[StepKey, int]:
    """Rows done per step, as the audit log tells it, for the runs in question."""
    if not runs:
        return {}
    wanted = {r.id for r in runs}
    since = timestamp(min(r.started_at for r in runs))
    found: dict[StepKey, int] = {}
    for entry in rt.audit.entries(action="retention", since=since):
        if entry.action == RetentionBatch.names[0]:
            continue  # one unit of a step's work; the step's own entry sums them
        details = json.loads(entry.details)
        if details.get("run") in wanted:
            found[(details["run"], details["dataset"], details["rule"], details["action"],
                   details["parent"])] = int(details["done"])
    return found
