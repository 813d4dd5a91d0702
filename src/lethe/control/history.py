"""Runs recorded in a span of time, read back for reports (read-only).

A run is dated by its `now` (the clock it ran with: `--now` in a replay, the wall
clock otherwise), so a report of a month replayed with `--now` counts that month.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from lethe.control.schema import run_actions, runs
from lethe.control.tx import as_utc, transaction


@dataclass(frozen=True)
class RunAction:
    """One step of a run as its record keeps it."""

    dataset: str
    rule: int | None
    action: str
    parent: str | None
    planned: int
    held: int
    done: int
    remaining: int | None
    verified: bool | None
    error: str | None
    blocked: int = 0  # due rows a foreign key kept
    blocked_by: tuple[tuple[str, int], ...] = ()  # (the key, rows it kept)
    lag_seconds: float | None = None  # how long its oldest due row was past its limit


@dataclass(frozen=True)
class RunRecord:
    id: int
    now: datetime  # the run's clock
    started_at: datetime  # wall clock: audit entries of the run are at or after it
    finished_at: datetime | None
    status: str  # running | completed | failed
    datasets: tuple[str, ...]
    error: str | None
    actions: tuple[RunAction, ...]


def runs_between(engine: Engine, start: datetime, end: datetime) -> list[RunRecord]:
    """Runs whose clock falls in [start, end), in id order, with their actions."""
    with transaction(engine, "reading runs", write=False) as conn:
        rows = conn.execute(sa.select(runs).where(runs.c.now >= start, runs.c.now < end)
                            .order_by(runs.c.id)).all()
        ids = [row.id for row in rows]
        steps: dict[int, list[RunAction]] = {i: [] for i in ids}
        if ids:
            for a in conn.execute(sa.select(run_actions).where(run_actions.c.run_id.in_(ids))
                                  .order_by(run_actions.c.run_id, run_actions.c.position)):
                steps[a.run_id].append(_action(a))
    return [RunRecord(row.id, _utc(row.now), _utc(row.started_at), as_utc(row.finished_at),
                      row.status, tuple(json.loads(row.datasets)), row.error,
                      tuple(steps[row.id])) for row in rows]


def _action(row: Any) -> RunAction:
    return RunAction(row.dataset, row.rule, row.action, row.parent, int(row.planned),
                     int(row.held), int(row.done or 0), row.remaining,
                     None if row.verified is None else bool(row.verified), row.error,
                     int(row.blocked or 0),
                     tuple(json.loads(row.blocked_by).items()) if row.blocked_by else (),
                     None if row.lag_seconds is None else float(row.lag_seconds))


def _utc(value: datetime) -> datetime:
    converted = as_utc(value)
    assert converted is not None
    return converted
