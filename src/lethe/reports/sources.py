"""What a monthly report is built from, read once: lethe's own records and the stores.

Everything here reads; nothing writes (not even an audit entry: a report is a view of
the evidence, and producing it must not change what it reports). The report itself is
assembled from these values by pure code in `monthly.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from lethe.audit.chain import Verdict
from lethe.audit.events import RetentionBatch
from lethe.audit.log import timestamp
from lethe.control.history import RunRecord, runs_between
from lethe.control.requests import RequestRecord, RequestStore
from lethe.control.store import Hold
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


def gather(rt: Runtime, month: Month) -> Sources:
    runs = runs_between(rt.control.engine, month.start, month.end)
    holds = rt.control.holds(include_released=True)
    return Sources(
        organization=rt.policy.organization, month=month, generated_at=rt.clock.now(),
        classes={name: ds.class_ for name, ds in rt.policy.datasets.items()},
        runs=tuple(runs), holds=tuple(holds),
        hold_scopes={h.id: shown_scope(rt.audit, h) for h in holds},
        requests=tuple(RequestStore(rt.control.engine).list()),
        ages=tuple(data_ages(rt)), audit=rt.audit.verify(), evidence=_evidence(rt, runs))


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
