"""Retention: check the policy against the stores, plan, run, and read past runs;
bucket lifecycle rules and restoring archived rows, which follow from the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from lethe.catalog import Finding
from lethe.engine.archive import Restored, restore
from lethe.engine.execute import DEFAULT_BATCH_SIZE, Progress, RunResult, execute
from lethe.engine.lifecycle import StoreLifecycle, lifecycle
from lethe.engine.plan import Plan, build_plan
from lethe.governance.check import CheckReport, check
from lethe.reports.ages import data_ages
from lethe.reports.trust import trust_pages
from lethe.reports.trust_claims import unbacked
from lethe.runtime import Runtime


def check_policy(rt: Runtime) -> CheckReport:
    """Every check of the policy against the live stores, residency included (it needs
    the control store's region preferences and transfers), and, with a `deletion_sla`,
    the age of every rule's oldest row nothing keeps."""
    report = check(rt.catalog, rt.audit, rt.clock.now(), rt.control)
    findings = [*report.findings, *claim_findings(rt)]
    if rt.policy.deletion_sla is not None and report.ok:
        findings += sla_findings(rt)
    return CheckReport(tuple(findings))


def claim_findings(rt: Runtime) -> list[Finding]:
    """Sentences the trust pages would publish that no enforced setting backs."""
    claims = trust_pages(rt.policy, rt.clock.now()).claims
    return [Finding("error", "page-claim", source or claim.page,
                    f"the {claim.page} page would say {claim.text[:80]!r} with nothing the "
                    f"policy enforces behind it ({source or 'no source'})")
            for claim, source in unbacked(rt.policy, claims)]


def sla_findings(rt: Runtime) -> list[Finding]:
    """Rules whose oldest row (held and blocked rows aside: exceptions with a reason)
    outlived its limit by more than the policy's `deletion_sla`."""
    now, sla = rt.clock.now(), rt.policy.deletion_sla
    found = []
    for reading in data_ages(rt):
        cutoff = reading.limit.before(now)
        if reading.error or reading.oldest is None or cutoff is None:
            continue
        late = (cutoff - reading.grace) - reading.oldest
        if late > timedelta(0):
            where = f"datasets.{reading.dataset}." + (
                "soft_delete" if reading.rule is None else f"retention[{reading.rule}]")
            found.append(Finding(
                "error", "deletion-sla", where,
                f"the oldest {reading.action} row is {_days(late)} past its {reading.limit} "
                f"limit and the {sla} deletion SLA (held and blocked rows aside)"))
    return found


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:.1f} days" if days < 10 else f"{days:.0f} days"


def plan(rt: Runtime, datasets: Sequence[str] | None = None) -> Plan:
    """What each rule would do now and what holds keep; changes nothing."""
    return build_plan(rt, datasets)


def run(rt: Runtime, planned: Plan, *, batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Progress | None = None,
        started: Callable[[int], None] | None = None) -> RunResult:
    """Carry out a plan in batches, verify each dataset and record the run; `started`
    learns the run's id as soon as it is recorded."""
    return execute(rt, planned, batch_size=batch_size, progress=progress, started=started)


def recent_runs(rt: Runtime, limit: int = 50) -> list[dict[str, Any]]:
    """The latest recorded runs, newest first."""
    return rt.control.recent_runs(limit)


def run_record(rt: Runtime, run_id: int) -> dict[str, Any]:
    """One recorded run with its actions; `NotFound` if there is none."""
    return rt.control.run(run_id)


def bucket_lifecycle(rt: Runtime, *, apply: bool = False) -> list[StoreLifecycle]:
    """The S3 lifecycle rules equivalent to the policy's object rules, per store; set
    on each bucket with `apply`."""
    return lifecycle(rt, apply=apply)


def restore_archived(rt: Runtime, dataset: str) -> Restored:
    """Put archived rows of `dataset` whose keys are gone back into its table."""
    return restore(rt, dataset)


__all__ = ["DEFAULT_BATCH_SIZE", "CheckReport", "Plan", "RunResult", "bucket_lifecycle",
           "check_policy", "plan", "recent_runs", "restore_archived", "run", "run_record"]
