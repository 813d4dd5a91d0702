"""The worker loop: claim a unit, do it while renewing the lease, mark it done.

Units are each schedule's datasets at its current occurrence and the pending
data-subject requests. Several workers on one PostgreSQL control store share them
through leases (`lethe.control.leases`): a unit is done by exactly one worker; a worker
that dies mid-unit stops renewing, its lease expires and another worker takes the unit
over (the run is resumable, so the second worker finishes what the first began). On
SIGTERM the current batch finishes, the lease is handed back, and the worker exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lethe.control.leases import LeaseStore
from lethe.defaults import BATCH_SECONDS, BATCH_SIZE, ERASURE_GROUP_SIZE
from lethe.engine.execute import Stopped, execute
from lethe.engine.plan import build_plan, builder_for
from lethe.errors import LetheError
from lethe.requests.service import overdue, requests_of, run_many
from lethe.runtime import Runtime
from lethe.worker.metrics import WorkerMetrics
from lethe.worker.schedule import Unit, schedule_units


@dataclass(frozen=True)
class WorkerOptions:
    holder: str
    lease_seconds: float = 60.0
    poll_seconds: float = 5.0
    batch_size: int = BATCH_SIZE
    batch_seconds: float | None = BATCH_SECONDS  # retention's time budget per batch
    request_interval: float = 60.0  # a request is looked at again this long after a run
    out_dir: Path = Path("lethe-requests")


@dataclass
class UnitReport:
    unit: str
    dataset: str
    done: int
    verified: bool
    takeover: bool
    # done | failed (ran, a step failed or did not verify: not run again this occurrence;
    # or could not start: released, tried again later) | stopped | lost
    status: str

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "dataset": self.dataset, "done": self.done,
                "verified": self.verified, "takeover": self.takeover, "status": self.status}


@dataclass
class WorkerReport:
    units: list[UnitReport] = field(default_factory=list)
    requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"units": [u.as_dict() for u in self.units], "requests": self.requests}


class _Heartbeat:
    """Renews leases on a thread while their work runs. A renewal that fails (the lease
    was taken over) or cannot be made for most of a lease's life (the control store is
    unreachable) marks the work lost, and the work stops at its next batch."""

    def __init__(self, leases: LeaseStore, units: list[str], holder: str, ttl: float) -> None:
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(leases, units, holder, ttl),
                                        daemon=True)

    def _beat(self, leases: LeaseStore, units: list[str], holder: str, ttl: float) -> None:
        renewed = time.monotonic()
        while not self._done.wait(ttl / 3):
            try:
                if not all([leases.renew(unit, holder, ttl) for unit in units]):
                    self.lost.set()
                    return
                renewed = time.monotonic()
            except LetheError:
                if time.monotonic() - renewed > ttl * 2 / 3:
                    self.lost.set()
                    return

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


class Worker:
    def __init__(self, rt: Runtime, options: WorkerOptions,
                 metrics: WorkerMetrics | None = None) -> None:
        self.rt, self.options = rt, options
        self.metrics = metrics or WorkerMetrics()
        self.leases = LeaseStore(rt.control.engine)
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Finish the current batch, hand the unit back, and stop."""
        self.stopping.set()

    # -- schedules ----------------------------------------------------------------------
    def units(self) -> list[Unit]:
        rt = self.rt
        builder = builder_for(rt, rt.clock.now())
        order = [*rt.select(None), *rt.catalog.cache_datasets(), *rt.catalog.object_datasets()]
        return schedule_units(rt.policy, order, builder.dependencies(), rt.clock.now())

    def _state(self) -> dict[str, str]:
        return {unit: s["state"] for unit, s in self.leases.states("schedule:").items()}

    def _run_unit(self, unit: Unit, takeover: bool) -> UnitReport:
        o = self.options
        started = time.monotonic()
        with _Heartbeat(self.leases, [unit.name], o.holder, o.lease_seconds) as beat:
            try:
                plan = build_plan(self.rt, [unit.dataset])
                for planned in plan.actions:
                    self.metrics.backlog.labels(planned.step.dataset).set(planned.rows)
                result = execute(self.rt, plan, batch_size=o.batch_size,
                                 batch_seconds=o.batch_seconds,
                                 stop=lambda: self.stopping.is_set() or beat.lost.is_set())
            except Stopped:
                if not beat.lost.is_set():
                    self.leases.release(unit.name, o.holder)  # another worker may go on
                return UnitReport(unit.name, unit.dataset, 0, False, takeover,
                                  "lost" if beat.lost.is_set() else "stopped")
            except LetheError:  # the store is down, the schema changed: try again later
                self.leases.release(unit.name, o.holder, after=o.poll_seconds * 6)
                return UnitReport(unit.name, unit.dataset, 0, False, takeover, "failed")
        self.metrics.unit_seconds.labels("schedule").observe(time.monotonic() - started)
        for action in result.actions:
            self.metrics.rows.labels(action.planned.step.dataset,
                                     action.planned.step.action).inc(action.done)
            if not action.verified:
                self.metrics.verification_failures.labels(action.planned.step.dataset).inc()
        done = sum(a.done for a in result.actions)
        # The occurrence ran, whatever its outcome: it is not run again by anyone (a step
        # that failed or did not verify says so in the run's record and audit entries,
        # and the schedule's next occurrence takes up what is left).
        finished = self.leases.finish(unit.name, o.holder)
        if finished:
            self.metrics.units.labels("schedule").inc()
        status = ("done" if result.ok else "failed") if finished else "lost"
        return UnitReport(unit.name, unit.dataset, done, result.ok, takeover, status)

    def schedules_once(self, report: WorkerReport) -> bool:
        """One pass over the current units; True when every one of them is done."""
        units = self.units()
        for unit in units:
            if self.stopping.is_set():
                return False
            state = self._state()
            if state.get(unit.name) == "done" or any(state.get(a) != "done" for a in unit.after):
                continue
            lease = self.leases.claim(unit.name, self.options.holder, self.options.lease_seconds)
            if lease is None:
                continue
            if lease.takeover:
                self.metrics.takeovers.inc()
            report.units.append(self._run_unit(unit, lease.takeover))
        state = self._state()
        return all(state.get(u.name) == "done" for u in units)

    # -- requests -----------------------------------------------------------------------
    def requests_once(self, report: WorkerReport) -> None:
        o = self.options
        records = [r for r in requests_of(self.rt).list()
                   if r.status not in ("completed", "rejected")]
        now = self.rt.clock.now()
        self.metrics.requests_open.set(len(records))
        self.metrics.requests_overdue.set(sum(overdue(r, now) for r in records))
        claimed: list[int] = []
        for record in records:
            if self.stopping.is_set() or len(claimed) >= ERASURE_GROUP_SIZE:
                break
            if self.leases.claim(f"request:{record.id}", o.holder, o.lease_seconds):
                claimed.append(record.id)
        if not claimed:
            return
        units = [f"request:{request_id}" for request_id in claimed]
        try:
            with _Heartbeat(self.leases, units, o.holder, o.lease_seconds):
                run_many(self.rt, claimed, o.out_dir, o.batch_size)
            report.requests += len(claimed)
        except LetheError:
            pass  # released below; looked at again after the interval
        finally:
            for request_id in claimed:  # looked at again after the interval
                self.leases.release(f"request:{request_id}", o.holder, after=o.request_interval)

    # -- the loop -----------------------------------------------------------------------
    def run(self, *, once: bool = False, on_pass: Callable[[WorkerReport], None] | None = None
            ) -> WorkerReport:
        """Work until stopped; with `once`, until the current schedule units are all done
        (by this worker or others) and pending requests were looked at."""
        report = WorkerReport()
        self.rt.prepare()
        requests_seen = False
        while not self.stopping.is_set():
            finished = self.schedules_once(report)
            if not requests_seen or not once:
                self.requests_once(report)
                requests_seen = True
            if on_pass is not None:
                on_pass(report)
            if once and finished:
                break
            self.stopping.wait(self.options.poll_seconds)
        return report
