"""Execution: the one place rows are deleted, soft-deleted, anonymized or purged.

Each batch is its own short transaction that re-reads the holds first, so a hold
placed mid-run takes effect at the next batch, and a run killed at any instant
leaves only whole batches behind: running again finishes the job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from lethe.audit.events import (
    KeysShredded,
    PartitionsDropped,
    RetentionBatch,
    RetentionStep,
    RunFinished,
    RunStarted,
)
from lethe.control.tx import transaction
from lethe.defaults import BATCH_SECONDS, BATCH_SIZE, MOST_BATCH_SECONDS
from lethe.engine.archive import archive_sink
from lethe.engine.cache import CacheDatasets
from lethe.engine.executor import Executor, SweepRows
from lethe.engine.objects import ObjectDatasets
from lethe.engine.partitions import drop_expired, eligible
from lethe.engine.plan import (
    UNSUPPORTED,
    Plan,
    PlannedAction,
    archived_in,
    builder_for,
    count_expiry,
    count_objects,
    count_step,
    shred_targets,
)
from lethe.engine.purge import is_reach, reach, subject_kind_of
from lethe.engine.recovery import live, recover_orphaned_runs, this_process
from lethe.engine.steps import Step, StepBuilder, time_column
from lethe.engine.subjects import SubjectReach
from lethe.errors import LetheError
from lethe.runtime import Runtime
from lethe.stores.base import BatchResult, Effect, Journal

ALIVE_EVERY = 10.0  # seconds between a run's "still alive" marks (engine.recovery)

Progress = Callable[[int, int], None]  # (action index, rows just done)


@dataclass
class ActionResult:
    planned: PlannedAction
    done: int = 0
    verified: bool | None = None
    remaining: int | None = None
    batches: int = 0
    longest_batch_ms: float = 0.0
    batch_ms: float = 0.0  # time inside batches, verification and planning excluded
    flush_ms: float = 0.0  # making the batches durable (stores.base.RowStore.flush)
    journal_ms: float = 0.0  # of batch_ms: recording each batch in the control store
    verify_ms: float = 0.0  # re-counting what is left
    error: str | None = None
    estimated: bool = False  # `done` holds a dropped partition's planner estimate
    partitions_stopped: str | None = None  # why the partition path stopped early
    # verification's count of the due rows a foreign key kept (None: not verified yet)
    blocked: int | None = None
    blocked_by: tuple[tuple[str, int], ...] = ()

    @property
    def kept_by_references(self) -> tuple[int, tuple[tuple[str, int], ...]]:
        """(rows, by which keys) a foreign key kept: as verified, else as planned."""
        if self.blocked is None:
            return self.planned.blocked, self.planned.blocked_by
        return self.blocked, self.blocked_by

    def as_dict(self) -> dict[str, Any]:
        data = self.planned.as_dict()
        blocked, blocked_by = self.kept_by_references
        data.update(blocked=blocked, blocked_by=[{"foreign_key": why, "rows": rows}
                                                 for why, rows in blocked_by])
        data.update(done=self.done, verified=bool(self.verified), batches=self.batches,
                    longest_batch_ms=round(self.longest_batch_ms, 2))
        if self.estimated:
            data["estimated"] = True
        if self.remaining:
            data["remaining"] = self.remaining
        if self.error:
            data["error"] = self.error
        if self.partitions_stopped:
            data["partitions_stopped"] = self.partitions_stopped
        return data


@dataclass
class RunResult:
    run: int
    plan: Plan
    actions: list[ActionResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(a.verified and not a.error for a in self.actions)

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "now": self.plan.now.isoformat(), "ok": self.ok,
                "skipped": self.plan.as_dict()["skipped"],
                "longest_batch_ms": round(max((a.longest_batch_ms for a in self.actions),
                                              default=0.0), 2),
                "actions": [a.as_dict() for a in self.actions]}


@dataclass(frozen=True)
class Batching:
    """How a run's sweeps batch: `rows` per batch, grown by a store that can within a
    time budget of `seconds` a batch (None: not grown)."""

    rows: int
    seconds: float | None


class Stopped(Exception):
    """Asked to stop: raised after a batch commits, so the run ends on a whole batch."""


def _stoppable(progress: Progress | None, stop: Callable[[], bool]) -> Progress:
    def report(index: int, rows: int) -> None:
        if progress is not None:
            progress(index, rows)
        if stop():
            raise Stopped

    return report


def execute(rt: Runtime, plan: Plan, *, batch_size: int = BATCH_SIZE,
            batch_seconds: float | None = BATCH_SECONDS,
            progress: Progress | None = None,
            stop: Callable[[], bool] | None = None,
            started: Callable[[int], None] | None = None) -> RunResult:
    """Carry out the plan. `stop` is asked after every batch; when it says so the run
    ends there (status `stopped`) and `Stopped` is raised. `started` learns the run's id
    as soon as it is recorded (the API answers with it while the run goes on).
    `batch_seconds`: a batch's time budget, which a store may grow batches of
    `batch_size` rows up to (`Sweep.seconds`); None or 0: every batch `batch_size` rows."""
    if batch_size < 1:
        raise LetheError("batch size must be at least 1", path="--batch-size")
    if batch_seconds is not None and not 0 <= batch_seconds <= MOST_BATCH_SECONDS:
        raise LetheError(f"a batch's time budget must be 0 to {MOST_BATCH_SECONDS:g} seconds",
                         path="--batch-seconds")
    if stop is not None:
        progress = _stoppable(progress, stop)
    builder = builder_for(rt, plan.now, periods=True, read=plan.periods)
    recover_orphaned_runs(rt)  # runs whose process died get their end first
    datasets = list(dict.fromkeys(a.step.dataset for a in plan.actions))
    with transaction(rt.control.engine, "recording a run") as conn:
        run_id = rt.control.start_run(plan.now, rt.audit.actor, rt.audit.source, datasets, [
            {"dataset": a.step.dataset, "rule": a.step.rule, "action": a.step.action,
             "parent": a.step.parent, "planned": a.rows, "held": a.held,
             "blocked": a.blocked, "lag_seconds": a.lag_seconds}
            for a in plan.actions], owner=this_process(), conn=conn)
        rt.audit.append_many([RunStarted(run_id, plan.now.isoformat(), datasets)], conn=conn)
    with live(run_id):
        if started is not None:
            started(run_id)
        return _carry_out(rt, builder, RunResult(run_id, plan,
                                                 [ActionResult(a) for a in plan.actions]),
                          Batching(batch_size, batch_seconds or None), progress)


def _journal(rt: Runtime, run_id: int, index: int, action: ActionResult,
             cascades: Mapping[str, int] | None = None) -> Journal:
    """Record a unit of work of action `index`, and the rows it cascaded into the
    children at `cascades` (child dataset -> action position), before it commits: the
    run's progress and a `retention.batch` audit entry, in one control-store
    transaction (stores.base.Journal); the time it takes adds to the action's
    `journal_ms`."""

    step = action.planned.step
    said_alive = [0.0]  # when the run last said its process is alive (monotonic)

    def record(rows: int, cascaded: Mapping[str, int]) -> None:
        started = time.perf_counter()
        done = {index: rows}
        for child, n in cascaded.items():
            position = (cascades or {}).get(child)
            if position is not None:
                done[position] = done.get(position, 0) + n
        alive = time.monotonic() - said_alive[0] >= ALIVE_EVERY
        with transaction(rt.control.engine, "recording run progress") as conn:
            rt.control.progress(run_id, done, conn=conn, alive=alive)
            rt.audit.append_many([RetentionBatch(
                run_id, step.dataset, step.action, rows,
                {child: n for child, n in cascaded.items() if n})], conn=conn)
        if alive:
            said_alive[0] = time.monotonic()
        action.journal_ms += (time.perf_counter() - started) * 1000

    return record


def _carry_out(rt: Runtime, builder: StepBuilder, result: RunResult, batching: Batching,
               progress: Progress | None) -> RunResult:
    plan, run_id = result.plan, result.run
    cascades = _cascades(result)
    objects = set(rt.catalog.object_datasets())
    archiving = archived_in([a.step for a in plan.actions])
    failure: str | None = None
    # dataset -> why its subject rows must stay this run: what goes with them (their
    # objects, keys, archived rows) could not all be removed, and once the rows are
    # gone nothing would find it again (a cold archive still being restored)
    unreached: dict[str, str] = {}
    try:
        for index, action in enumerate(result.actions):
            step = action.planned.step
            if step.action == "cascade" and not builder.standalone(step):
                continue  # done inside the parent's batches, verified after them
            if step.action in UNSUPPORTED:
                action.error = UNSUPPORTED[step.action]
            elif step.dataset in unreached and builder.removes(step) and step.parent is None:
                action.error = f"not run: {unreached[step.dataset]}"
            else:
                try:
                    _act(rt, builder, result, index, batching, progress, archiving,
                         cascades, in_objects=step.dataset in objects)
                except LetheError as exc:
                    action.error = str(exc)
                    if is_reach(step) and step.parent is not None:
                        unreached[step.parent] = f"{step.dataset} ({step.action}) did not " \
                            f"finish: {exc}"
            _record(rt, run_id, index, action)
            if _last_step_of(result.actions, index):
                for (_child, parent), cascade in cascades.items():
                    if parent == step.dataset:
                        _verify(rt, builder, cascade)
                        _record(rt, run_id, result.actions.index(cascade), cascade)
    except BaseException as exc:  # interrupted: the run record must say so, then re-raise
        failure = type(exc).__name__
        status = "stopped" if isinstance(exc, Stopped) else "failed"
        if isinstance(exc, Stopped):  # its committed batches belong in the record
            _record(rt, run_id, index, action)
        _close_run(rt, result, status, failure)
        raise
    errors = [a.error for a in result.actions if a.error]
    _close_run(rt, result, "completed" if not errors else "completed_with_errors",
               "; ".join(errors) or None)
    return result


def _act(rt: Runtime, builder: StepBuilder, result: RunResult, index: int,
         batching: Batching, progress: Progress | None, archiving: Sequence[str],
         cascades: dict[tuple[str, str | None], ActionResult], *, in_objects: bool) -> None:
    """Carry out one step and verify it (a cascade is verified after its parent's steps)."""
    action = result.actions[index]
    step = action.planned.step
    if is_reach(step):
        _reach(rt, builder, action, index, progress)
    elif step.action == "shred":
        _shred(rt, builder, action)
    elif step.action == "expire":
        _expire(rt, builder, action, index, progress)
    elif in_objects:
        _delete_objects(rt, builder, action, index, progress,
                        _journal(rt, result.run, index, action))
    else:
        journal = _journal(rt, result.run, index, action, {
            child: result.actions.index(cascade)
            for (child, parent), cascade in cascades.items() if parent == step.dataset})
        _sweep(rt, builder, action, cascades, index, batching, progress, journal)
        if step.action != "cascade" and _verify(rt, builder, action, archiving).remaining:
            # rows that landed behind a walk over the table's pages: walk the key to them
            _sweep(rt, builder, action, cascades, index, batching, progress, journal,
                   by_key=True)
            _verify(rt, builder, action, archiving)
        return
    if step.action != "cascade":
        _verify(rt, builder, action, archiving)


def _cascades(result: RunResult) -> dict[tuple[str, str | None], ActionResult]:
    """The run's cascade steps by (child dataset, parent dataset)."""
    return {(r.planned.step.dataset, r.planned.step.parent): r for r in result.actions
            if r.planned.step.action == "cascade"}


def _close_run(rt: Runtime, result: RunResult, status: str, error: str | None) -> None:
    """The run's status and its `run.finished` entry commit together (a run still
    `running` has none: engine.recovery closes it), then a signed checkpoint, so
    truncation after it is detectable."""
    with transaction(rt.control.engine, "finishing a run") as conn:
        rt.control.finish_run(result.run, status, error, conn=conn)
        rt.audit.append_many([RunFinished(result.run, status,
                                          sum(a.done for a in result.actions), result.ok)],
                             conn=conn)
    rt.audit.checkpoint()


def _last_step_of(actions: list[ActionResult], index: int) -> bool:
    dataset = actions[index].planned.step.dataset
    return all(a.planned.step.dataset != dataset or a.planned.step.action == "cascade"
               for a in actions[index + 1:])


def _sweep(rt: Runtime, builder: StepBuilder, action: ActionResult,
           cascades: dict[tuple[str, str | None], ActionResult], index: int,
           batching: Batching, progress: Progress | None, journal: Journal,
           *, by_key: bool = False) -> None:
    """Sweep the step's due rows. The batches commit without waiting for the log and
    the store is flushed before the step is verified or recorded (a flush that finds
    the database lost them fails the step). A store may walk a big table's pages rather
    than its key (stores.sql.blocks): a row that lands behind that walk is found by the
    verification's re-count and taken by a second sweep, `by_key`, that walks the key
    to the due rows alone."""
    step = action.planned.step
    sink = None
    if step.action == "archive":
        assert step.rule is not None
        sink = archive_sink(rt, step.dataset, step.rule)
        sink.settle()  # what a killed run left, before any new chunk
        effect: Effect = sink.effect()
    else:
        effect = builder.effect(step)
    count = 0
    if not by_key and eligible(rt, builder, step):  # whole partitions past retention first
        started = time.perf_counter()
        dropped = drop_expired(rt, builder, step, sink, batching.rows, journal)
        elapsed_ms = (time.perf_counter() - started) * 1000
        count = len(dropped.partitions)
        action.done += dropped.rows
        action.estimated = dropped.estimated
        action.partitions_stopped = dropped.stopped
        action.batches += count
        action.batch_ms += elapsed_ms
        action.longest_batch_ms = max(action.longest_batch_ms, elapsed_ms / max(count, 1))
        if count:
            rt.audit.append(PartitionsDropped(step.dataset, step.action,
                                              list(dropped.partitions), dropped.rows,
                                              dropped.estimated))
            if progress is not None:
                progress(index, dropped.rows)

    executor = Executor(rt, builder)
    rows = SweepRows(step.dataset, lambda holds: builder.due(step, holds), effect,
                     deletes=builder.removes(step), blocked=builder.blocked(step),
                     cascades=builder.removes(step), journal=journal, selective=by_key,
                     durable=False, time_column=_time_column(rt, step),
                     seconds=batching.seconds)

    def on_batch(batch: BatchResult, elapsed_ms: float) -> None:
        if sink is not None:
            sink.committed()
        for child, rows in batch.cascaded.items():
            cascade = cascades.get((child, step.dataset))
            if cascade is not None:
                cascade.done += rows
                cascade.batches += 1
                cascade.longest_batch_ms = max(cascade.longest_batch_ms, elapsed_ms)
        if progress is not None:
            progress(index, batch.rows)

    if count:  # the drops may have taken every due row: then no key range is worth walking
        started = time.perf_counter()
        left = executor.count(rows)
        action.batch_ms += (time.perf_counter() - started) * 1000
        if not left:
            return
    store = rt.catalog.store_of(step.dataset)
    try:
        stats = executor.sweep(rows, batching.rows, on_batch).stats
    except BaseException:
        with suppress(LetheError):  # the first error is the one told
            store.flush()
        raise
    started = time.perf_counter()
    store.flush()
    action.flush_ms += (time.perf_counter() - started) * 1000
    action.done += stats.rows
    action.batches += stats.batches
    action.batch_ms += stats.total_ms
    action.longest_batch_ms = max(action.longest_batch_ms, stats.longest_ms)


def _time_column(rt: Runtime, step: Step) -> str | None:
    aging = time_column(rt.policy.datasets[step.dataset], step)
    return None if aging is None else aging[0]


def _reach(rt: Runtime, builder: StepBuilder, action: ActionResult, index: int,
           progress: Progress | None) -> None:
    """What goes with the subjects a purge removes: keys shredded, objects and Redis keys
    removed, archived rows taken out (engine.purge), before the subject rows go."""
    started = time.perf_counter()
    action.done = reach(rt, builder, action.planned.step, dry=False).done
    action.batches = 1 if action.done else 0
    action.longest_batch_ms = action.batch_ms = (time.perf_counter() - started) * 1000
    if progress is not None:
        progress(index, action.done)


def _shred(rt: Runtime, builder: StepBuilder, action: ActionResult) -> None:
    """Destroy the data keys of the due subjects; their rows stay, unreadable."""
    step = action.planned.step
    kind = subject_kind_of(rt, step.dataset)
    assert kind is not None  # the policy allows shred rules on subject datasets only
    action.done = len(Executor(rt, builder).shred(
        SubjectReach(rt, builder, kind),
        lambda holds: shred_targets(rt, builder, holds, step)[1]))
    action.batches = 1 if action.done else 0
    if action.done:
        rt.audit.append(KeysShredded(f"dataset:{step.dataset}", kind, action.done))


def _expire(rt: Runtime, builder: StepBuilder, action: ActionResult, index: int,
            progress: Progress | None) -> None:
    """Cap the TTL of a cache dataset's keys, a SCAN page at a time."""

    def on_page(done: int) -> None:
        action.batches += 1
        if progress is not None:
            progress(index, done)

    action.done = CacheDatasets(rt.policy, rt.catalog).cap(
        action.planned.step.dataset, rt.clock.now(), lambda: rt.hold_scopes(builder),
        rt.hold_gate, on_page)


def _delete_objects(rt: Runtime, builder: StepBuilder, action: ActionResult, index: int,
                    progress: Progress | None, journal: Journal) -> None:
    """Delete an object dataset's due objects, a listing page at a time."""
    step = action.planned.step
    assert step.rule is not None

    def on_page(done: int) -> None:
        action.batches += 1
        if progress is not None:
            progress(index, done)

    action.done = ObjectDatasets(rt.policy, rt.catalog).sweep(
        step.dataset, step.rule, rt.clock.now(), lambda: rt.hold_scopes(builder),
        rt.hold_gate, on_page, lambda due: journal(due, {}))


def _verify(rt: Runtime, builder: StepBuilder, action: ActionResult,
            archiving: Sequence[str] = ()) -> ActionResult:
    """Re-count what is still due and not held: anything left means the step failed."""
    started = time.perf_counter()
    step, holds = action.planned.step, rt.hold_scopes(builder)
    if is_reach(step):
        recount = count_step(rt, builder, holds, step, archiving=archiving)
    elif step.action == "expire":
        recount = count_expiry(rt, holds, step)
    elif rt.policy.stores[rt.policy.datasets[step.dataset].store].kind == "objects":
        recount = count_objects(rt, holds, step)
    else:
        recount = count_step(rt, builder, holds, step)
    action.remaining = recount.rows
    action.blocked, action.blocked_by = recount.blocked, recount.blocked_by
    action.verified = recount.rows == 0 and action.error is None
    action.verify_ms += (time.perf_counter() - started) * 1000
    return action


def _record(rt: Runtime, run_id: int, index: int, action: ActionResult) -> None:
    """The step's record and its audit entry commit together: a step whose record has a
    `verified` value or an error has its entry (engine.recovery relies on it)."""
    step = action.planned.step
    blocked, blocked_by = action.kept_by_references
    with transaction(rt.control.engine, "recording run progress") as conn:
        rt.control.record_action(run_id, index, conn=conn, done=action.done,
                                 verified=action.verified, remaining=action.remaining,
                                 batches=action.batches,
                                 longest_batch_ms=action.longest_batch_ms,
                                 error=action.error, estimated=action.estimated,
                                 blocked=blocked,
                                 blocked_by=json.dumps(dict(blocked_by)) if blocked_by else None)
        rt.audit.append_many([RetentionStep(
            run_id, step.dataset, step.rule, step.action, step.parent, action.planned.rows,
            action.planned.held, action.done, action.batches, bool(action.verified),
            action.remaining, action.error, action.estimated, blocked,
            dict(blocked_by) or None)], conn=conn)
