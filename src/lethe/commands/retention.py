"""Retention: plan and run, and read past runs; bucket lifecycle rules and restoring
archived rows, which follow from the same rules. (`check` is in `commands.checks`.)

Only planning is imported with the module: `lethe plan` is the command people run most
and must start at once, so running, lifecycle and restoring import their engine parts
when called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lethe.defaults import BATCH_SECONDS, BATCH_SIZE
from lethe.engine.plan import Plan, build_plan
from lethe.runtime import Runtime

if TYPE_CHECKING:
    from lethe.engine.archive import Restored
    from lethe.engine.execute import Progress, RunResult
    from lethe.engine.lifecycle import StoreLifecycle
    from lethe.reports.explain import Explanation


def plan(rt: Runtime, datasets: Sequence[str] | None = None) -> Plan:
    """What each rule would do now and what holds keep; changes nothing."""
    return build_plan(rt, datasets)


def explain_dataset(rt: Runtime, dataset: str, subject: str | None = None,
                    workspace: str | None = None) -> Explanation:
    """Why `dataset`'s rows (a subject's, a workspace's) are due now or stay."""
    from lethe.commands.holds import hold_scope
    from lethe.reports.explain import explain

    scope = None if subject is None and workspace is None else \
        hold_scope(rt, subject, workspace, None)
    return explain(rt, dataset, scope)


def run(rt: Runtime, planned: Plan, *, batch_size: int = BATCH_SIZE,
        batch_seconds: float | None = BATCH_SECONDS,
        progress: Progress | None = None,
        started: Callable[[int], None] | None = None) -> RunResult:
    """Carry out a plan in batches, verify each dataset and record the run; `started`
    learns the run's id as soon as it is recorded."""
    from lethe.engine.execute import execute

    return execute(rt, planned, batch_size=batch_size, batch_seconds=batch_seconds,
                   progress=progress, started=started)


def recent_runs(rt: Runtime, limit: int = 50) -> list[dict[str, Any]]:
    """The latest recorded runs, newest first."""
    return rt.control.recent_runs(limit)


def run_record(rt: Runtime, run_id: int) -> dict[str, Any]:
    """One recorded run with its actions; `NotFound` if there is none."""
    return rt.control.run(run_id)


def bucket_lifecycle(rt: Runtime, *, apply: bool = False) -> list[StoreLifecycle]:
    """The S3 lifecycle rules equivalent to the policy's object rules, per store; set
    on each bucket with `apply`."""
    from lethe.engine.lifecycle import lifecycle

    return lifecycle(rt, apply=apply)


def list_archived(rt: Runtime, dataset: str) -> list[dict[str, Any]]:
    """The dataset's archived chunks, each with its storage class and restore state."""
    from lethe.engine.archive import archived_chunks

    return archived_chunks(rt, dataset)


def restore_archived(rt: Runtime, dataset: str) -> Restored:
    """Put archived rows of `dataset` whose keys are gone back into its table."""
    from lethe.engine.archive import restore

    return restore(rt, dataset)


__all__ = [
    "Plan",
    "bucket_lifecycle",
    "explain_dataset",
    "list_archived",
    "plan",
    "recent_runs",
    "restore_archived",
    "run",
    "run_record",
]
