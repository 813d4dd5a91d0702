"""Orphaned runs: a run whose process ended before it could close its record.

A run records every unit of work before that work commits (the `progress` journal
of engine.execute), so a run that died — killed, or stopped by a full control-store
disk after its last record — has a record that covers everything it deleted, at most
one unit of work ahead of the data. What it lacks is its end: the audit entries of the
steps it was in and its `run.finished`. The next run closes it: status `interrupted`,
one `retention.<action>` entry per unfinished step with the rows its record holds,
and `run.finished`, all in one transaction with the status change, so two runs
recovering at once close it once.

A run is orphaned when its process is gone: on the same machine, its process id is not
alive (in this process, it is not one of the runs going on here); on another machine,
it has recorded nothing for `STALE_AFTER`.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from lethe.audit.events import RetentionStep, RunFinished
from lethe.control.store import OpenRun, RunOwner
from lethe.control.tx import transaction
from lethe.runtime import Runtime

STALE_AFTER = timedelta(hours=1)  # another machine's run that recorded nothing this long
INTERRUPTED_RUN = "interrupted: the run's process ended before this step finished"
INTERRUPTED = (f"{INTERRUPTED_RUN}; rows are what its batches recorded before committing "
               "(at most one batch over)")

_live: set[int] = set()  # runs going on in this process
_live_lock = threading.Lock()


def this_process() -> RunOwner:
    return RunOwner(socket.gethostname(), os.getpid())


@contextmanager
def live(run_id: int) -> Iterator[None]:
    """Mark the run as going on in this process while the block runs."""
    with _live_lock:
        _live.add(run_id)
    try:
        yield
    finally:
        with _live_lock:
            _live.discard(run_id)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def orphaned(run: OpenRun, now: datetime | None = None) -> bool:
    me = this_process()
    if run.owner.machine == me.machine and run.owner.pid:
        if run.owner.pid == me.pid:
            with _live_lock:
                return run.id not in _live
        return not _process_alive(run.owner.pid)
    return (now or datetime.now(UTC)) - run.alive_at > STALE_AFTER


def _unfinished(step: Mapping[str, Any]) -> bool:
    """A step the run began and did not end. engine.execute writes a step's end
    (verified or an error) together with its audit entry; one with neither rows nor
    batches never started: nothing to account for."""
    return step["verified"] is None and step["error"] is None \
        and bool(step["done"] or step["batches"])


class _Closed(Exception):
    """Someone else closed the run first: roll this recovery back."""


def recover_orphaned_runs(rt: Runtime) -> list[int]:
    """Close every orphaned run; the ids closed here."""
    closed = []
    for run in rt.control.open_runs():
        if orphaned(run) and _close(rt, run.id):
            closed.append(run.id)
    return closed


def _close(rt: Runtime, run_id: int) -> bool:
    record = rt.control.run(run_id)
    unfinished = [step for step in record["actions"] if _unfinished(step)]
    events: list[RetentionStep | RunFinished] = [RetentionStep(
        run_id, step["dataset"], step["rule"], step["action"], step["parent"],
        int(step["planned"]), int(step["held"]), int(step["done"]), int(step["batches"]),
        False, None, INTERRUPTED, bool(step["estimated"])) for step in unfinished]
    rows = sum(int(step["done"] or 0) for step in record["actions"])
    events.append(RunFinished(run_id, "interrupted", rows, False))
    try:
        with transaction(rt.control.engine, "closing an interrupted run") as conn:
            if not rt.control.finish_run(run_id, "interrupted", INTERRUPTED_RUN, conn=conn,
                                         only_running=True):
                raise _Closed
            for step in unfinished:
                rt.control.record_action(run_id, step["position"], conn=conn,
                                         verified=False, error=INTERRUPTED)
            rt.audit.append_many(events, conn=conn)
    except _Closed:
        return False
    return True
