"""Retention: check the policy against the stores, plan, run, and read past runs;
bucket lifecycle rules and restoring archived rows, which follow from the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lethe.engine.archive import Restored, restore
from lethe.engine.execute import DEFAULT_BATCH_SIZE, Progress, RunResult, execute
from lethe.engine.lifecycle import StoreLifecycle, lifecycle
from lethe.engine.plan import Plan, build_plan
from lethe.governance.check import CheckReport, check
from lethe.runtime import Runtime


def check_policy(rt: Runtime) -> CheckReport:
    """Every check of the policy against the live stores, residency included (it needs
    the control store's region preferences and transfers)."""
    return check(rt.catalog, rt.audit, rt.clock.now(), rt.control)


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
