"""Planning: count what each step would do, change nothing.

The plan is data: `run` executes the same steps in the same order, and `--json`
and the progress bar render the same objects.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from lethe.catalog import unhandled_references
from lethe.control.overrides import RetentionOverrides
from lethe.crypto.keys import live_subjects
from lethe.engine.cache import CacheDatasets
from lethe.engine.objects import ObjectDatasets
from lethe.engine.partitions import droppable
from lethe.engine.purge import is_reach, reach, reach_steps, subject_kind_of
from lethe.engine.steps import Known, Step, StepBuilder, belongs_to_children, time_column
from lethe.holds import HoldScopes
from lethe.policy.durations import Duration, parse_duration
from lethe.policy.graph import children_first
from lethe.policy.periods import UNIT_SECONDS, KeepFrom, seconds
from lethe.runtime import Runtime
from lethe.stores.base import FALSE, Condition, RowStore, all_of, negate

UNSUPPORTED: dict[str, str] = {}  # action -> why it cannot run yet


@dataclass(frozen=True)
class Skip:
    """Work a step leaves undone, and why: rows (keys, objects) a hold keeps, rows a
    foreign key still needs, an action this version cannot carry out."""

    items: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "reason": self.reason}


@dataclass(frozen=True)
class PlannedAction:
    step: Step
    rows: int
    held: int
    blocked: int = 0  # due, not held, but a foreign key still points at them
    partitions: int = 0  # whole partitions past retention the run drops (PostgreSQL)
    # (the foreign key, as `Reference.describe` names it; rows it keeps): a row two keys
    # point at is counted under each, so these may add up to more than `blocked`
    blocked_by: tuple[tuple[str, int], ...] = ()
    # how long the oldest of the `rows` had been past its limit when planned: the
    # deletion lag this run ends (None: nothing due, or no time column)
    lag_seconds: float | None = None

    @property
    def skips(self) -> tuple[Skip, ...]:
        found = []
        if self.held:
            found.append(Skip(self.held, "held by a legal hold"))
        if self.blocked:
            found.append(Skip(self.blocked, blocked_reason(self.blocked_by)))
        if self.step.action in UNSUPPORTED:
            found.append(Skip(self.rows, UNSUPPORTED[self.step.action]))
        return tuple(found)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"dataset": self.step.dataset, "rule": self.step.rule,
                                "action": self.step.action, "rows": self.rows,
                                "held": self.held, "blocked": self.blocked,
                                "blocked_by": [{"foreign_key": why, "rows": rows}
                                               for why, rows in self.blocked_by],
                                "path": "partitions" if self.partitions else "rows",
                                "partitions": self.partitions,
                                "lag_seconds": None if self.lag_seconds is None
                                else round(self.lag_seconds, 3)}
        if self.step.parent is not None:
            data["parent"] = self.step.parent
        data["skips"] = [skip.as_dict() for skip in self.skips]
        if self.step.action in UNSUPPORTED:
            data["note"] = UNSUPPORTED[self.step.action]
        return data


@dataclass(frozen=True)
class PeriodsRead:
    """The periods customers set, as a plan read them when it was made: the run that
    carries the plan out judges rows by these same periods, so it does what the plan
    counted (and does not pay for reading 10,000 parents again a moment later)."""

    # dataset -> workspace -> the period it chose through the API (`chosen_periods`)
    chosen: Mapping[str, Mapping[str, Duration]]
    # (dataset, rule) -> the periods its parents set (`known_periods`)
    known: Mapping[tuple[str, int], Known]


@dataclass(frozen=True)
class Plan:
    now: datetime
    actions: tuple[PlannedAction, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (dataset, why): declared but not enforced
    # dataset -> period a workspace chose through the API -> how many chose it
    chosen: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # the periods the plan was made with (None: a plan from elsewhere; the run reads them)
    periods: PeriodsRead | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "actions": [a.as_dict() for a in self.actions],
                "skipped": [{"dataset": d, "reason": r} for d, r in self.skipped],
                "chosen_periods": {name: dict(periods) for name, periods in self.chosen.items()}}


def ordered_steps(rt: Runtime, builder: StepBuilder, names: Sequence[str]) -> list[Step]:
    """Children first; a parent's cascades, then what goes with its subjects in other
    kinds of store (engine.purge), come right before its own steps."""
    children = belongs_to_children(builder.policy)
    steps: list[Step] = []
    for name in names:
        steps += builder.cascade_steps(name, children)
        steps += reach_steps(rt, builder, name)
        steps += builder.own_steps(name)
    return steps


def builder_for(rt: Runtime, now: datetime, *, periods: bool = False,
                read: PeriodsRead | None = None) -> StepBuilder:
    """The step builder for this runtime's live schema at `now`. `periods`: read the
    periods parents set once (`known_periods`), for work that judges rows by them — a
    retention plan or run; an erasure or a hold's scope does not, and reading every
    parent for them would only slow them down. `read`: the periods a plan read, which
    its run uses instead of reading them again."""
    keys, nullable = rt.catalog.keys(), rt.catalog.nullable()
    if read is None:
        read = PeriodsRead(chosen_periods(rt), known_periods(rt, keys, now) if periods else {})
    return StepBuilder(rt.policy, keys, nullable, now,
                       unhandled_references(rt.catalog, keys, nullable),
                       chosen=read.chosen, known=read.known)


def chosen_periods(rt: Runtime) -> dict[str, dict[str, Duration]]:
    """dataset -> workspace -> the period it chose through the API, kept within the rule's
    bounds as they are now, for the datasets whose rule lets workspaces choose (read once
    per plan or run)."""
    if not any(ds.workspace_period for ds in rt.policy.datasets.values()):
        return {}
    now = rt.clock.now()
    found: dict[str, dict[str, Duration]] = {}
    for name, chosen in RetentionOverrides(rt.control.engine).by_dataset().items():
        ds = rt.policy.datasets.get(name)
        bounds = None if ds is None else ds.workspace_period
        if bounds is not None:  # (a dataset no longer choosable: its choices wait unused)
            found[name] = {workspace: bounds.clamped(parse_duration(keep), now)
                           for workspace, keep in chosen.items()}
    return found


DENSEST = 4  # key range at most this many times the parents read (else: looked up per row)
MOST_KNOWN = 2_000_000  # parents whose periods a statement carries (16 MB of float8)


def known_periods(rt: Runtime, keys: Mapping[str, str], now: datetime
                  ) -> dict[tuple[str, int], Known]:
    """The periods each `keep: {from: PARENT.COLUMN}` rule's parents set, read once when
    a plan or run starts, for a store that can look them up by key cheaper than in the
    parent's table (PostgreSQL, a dense integer key): each clamped as the SQL clamps it,
    the default for a parent whose setting is not valid (NULL, not positive: most
    workspaces never choose one, and a lookup per row cost their rows ~16x an array
    subscript), 0 for a key with no parent. A parent added or changed later is looked
    up per row as before, except that a parent known now keeps the period read now
    until the next plan (as a period chosen through the API does; a run carries out its
    plan with the periods the plan read: `PeriodsRead`)."""
    found: dict[tuple[str, int], Known] = {}
    settings: dict[str, dict[int, object]] = {}
    for name, ds in rt.policy.datasets.items():
        for index, rule in enumerate(ds.retention):
            keep = rule.keep
            if not isinstance(keep, KeepFrom) or not keep.from_:
                continue
            store = rt.catalog.store_of(keep.dataset)
            if store.dialect != "postgresql":
                continue
            if keep.from_ not in settings:
                settings[keep.from_] = _settings(rt, store, keys[keep.dataset],
                                                 keep.dataset, keep.column)
            read = settings[keep.from_]
            if not read or max(read) - min(read) + 1 > DENSEST * len(read):
                continue
            low, high = seconds(keep.min, now), seconds(keep.max, now)
            # a parent with no valid setting takes the default, as the lookup gives it
            fallback = float(seconds(keep.clamped(keep.default, now), now))
            first = min(read)
            periods = [0.0] * (max(read) - first + 1)
            single = _single_precision(rt, keep.dataset, keep.column)
            unit = UNIT_SECONDS[keep.unit]
            for key, value in read.items():
                # an integer column's value as is (the common case, 10,000 of them a run)
                setting = value if type(value) is int else _number(value, single)
                periods[key - first] = float(min(max(setting * unit, low), high)) \
                    if setting is not None and setting > 0 else fallback
            found[(name, index)] = (first, tuple(periods))
    return found


def _number(value: object, single: bool) -> float | None:
    """A setting as the SQL reads it (`CAST(setting AS float8)`): None for no number, NaN
    or an infinity; a `real` column's value rounded to single precision, as stored."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    return struct.unpack("f", struct.pack("f", number))[0] if single else number


def _single_precision(rt: Runtime, parent: str, column: str) -> bool:
    """Is the settings column a single-precision float (PostgreSQL `real`)?"""
    info = rt.catalog.table_of(parent).columns.get(column)
    return info is not None and info.type.upper() in ("REAL", "FLOAT4")


def _settings(rt: Runtime, store: RowStore, key: str, parent: str,
              column: str) -> dict[int, object]:
    """The parent's key -> setting, when there are at most MOST_KNOWN parents and every
    key is an integer (else nothing)."""
    rows = store.select_at_most(rt.policy.datasets[parent].table or "", [key, column],
                                MOST_KNOWN)
    if rows is None or not all(type(k) is int for k, _ in rows):
        return {}
    return {int(k): value for k, value in rows}


def shred_targets(rt: Runtime, builder: StepBuilder, holds: HoldScopes,
                  step: Step) -> tuple[str, list[object]]:
    """(subject kind, ids) a shred step would destroy keys for: due, not held, key alive."""
    kind = subject_kind_of(rt, step.dataset)
    assert kind is not None  # the policy allows shred rules on subject datasets only
    # Shredding reaches every encrypted field of the subject, linked rows included, so
    # a hold on any of them keeps the key (the `up` side of the holds, as for a delete).
    ids = rt.catalog.store_of(step.dataset).values(
        rt.policy.datasets[step.dataset].table or "", builder.keys[step.dataset],
        all_of(builder.due(step, holds), negate(holds.held(step.dataset, cascading=True))))
    return kind, live_subjects(rt.control.engine, kind, ids)


def count_step(rt: Runtime, builder: StepBuilder, holds: HoldScopes, step: Step, *,
               archiving: Sequence[str] = ()) -> PlannedAction:
    """What a step would do now. `archiving`: datasets whose archive steps the plan
    runs (they run before any reach line of their parent)."""
    if is_reach(step):
        reached = reach(rt, builder, step, dry=True, archiving=step.dataset in archiving)
        return PlannedAction(step, reached.done, reached.held)
    store = rt.catalog.store_of(step.dataset)
    table = rt.policy.datasets[step.dataset].table or ""
    due = builder.due(step, holds)
    held = builder.held(step, holds)
    if step.action == "shred":  # the rows stay; what is due is a live key
        held = holds.held(step.dataset, cascading=True)
        held_rows = 0 if held == FALSE else store.count(table, all_of(due, held))
        return PlannedAction(step, len(shred_targets(rt, builder, holds, step)[1]), held_rows)
    blocked = builder.blocked(step)
    rows = store.count(table, all_of(due, negate(held), negate(blocked)))
    held_rows = 0 if held == FALSE else store.count(table, all_of(due, held))
    blocked_rows = 0 if blocked == FALSE else \
        store.count(table, all_of(due, negate(held), blocked))
    return PlannedAction(step, rows, held_rows, blocked_rows,
                         len(droppable(rt, builder, holds, step)),
                         blocked_by(store, table, all_of(due, negate(held)),
                                    builder.blockers(step.dataset), blocked_rows)
                         if blocked_rows else ())


def blocked_by(store: RowStore, table: str, selection: Condition,
               blockers: Sequence[tuple[str, Condition]],
               blocked: int) -> tuple[tuple[str, int], ...]:
    """Which foreign keys keep the `blocked` rows of `selection`, and how many each (one
    key keeps them all: no need to count again)."""
    if len(blockers) == 1:
        return ((blockers[0][0], blocked),)
    counted = [(why, store.count(table, all_of(selection, where))) for why, where in blockers]
    return tuple((why, rows) for why, rows in counted if rows)


def blocked_reason(blocked_by: Sequence[tuple[str, int]]) -> str:
    """Why rows stay for a foreign key, naming the key(s)."""
    keys = "; ".join(why for why, _rows in blocked_by) or "a foreign key"
    return f"still referenced through {keys}, which no rule or cascade clears"


def archived_in(steps: Sequence[Step]) -> list[str]:
    """Datasets whose own archive steps are among these."""
    return [s.dataset for s in steps if s.action == "archive" and s.parent is None]


def build_plan(rt: Runtime, datasets: Sequence[str] | None = None) -> Plan:
    names = rt.select(datasets)
    rt.prepare()
    now = rt.clock.now()
    builder = builder_for(rt, now, periods=True)
    names = children_first(names, builder.dependencies())
    holds = rt.hold_scopes(builder)
    builder = builder.ahead(holds, names)  # each step counted as its turn will find it
    chosen = datasets or list(rt.policy.datasets)
    steps = ordered_steps(rt, builder, names)
    archiving = archived_in(steps)
    actions = [with_lag(rt, builder, holds,
                        count_step(rt, builder, holds, s, archiving=archiving))
               for s in steps]
    actions += [count_objects(rt, holds, Step(name, index, "delete"))
                for name in rt.catalog.object_datasets(chosen)
                for index in range(len(rt.policy.datasets[name].retention))]
    actions += [count_expiry(rt, holds, Step(name, 0, "expire"))
                for name in rt.catalog.cache_datasets(chosen)
                if rt.policy.datasets[name].retention]
    return Plan(now, tuple(actions), chosen=_chosen_counts(builder, names),
                periods=PeriodsRead(builder.chosen, builder.known))


def _chosen_counts(builder: StepBuilder, names: Sequence[str]) -> dict[str, dict[str, int]]:
    """How many workspaces chose each period, for the planned datasets that let them."""
    counts: dict[str, dict[str, int]] = {}
    for name in names:
        for period in builder.chosen.get(name, {}).values():
            counts.setdefault(name, {})
            counts[name][str(period)] = counts[name].get(str(period), 0) + 1
    return counts


def with_lag(rt: Runtime, builder: StepBuilder, holds: HoldScopes,
             action: PlannedAction) -> PlannedAction:
    """The action with its deletion lag: how long its oldest due row (held and blocked
    rows aside) has been past its limit, one MIN aggregate on the time column."""
    step = action.step
    ds = rt.policy.datasets[step.dataset]
    clock = None if not action.rows or is_reach(step) else time_column(ds, step)
    if clock is None:
        return action
    column, limit = clock
    cutoff = limit.before(builder.now)
    if cutoff is None:
        return action
    oldest = rt.catalog.store_of(step.dataset).oldest(
        ds.table or "", column, all_of(builder.due(step, holds), negate(builder.held(step, holds)),
                                       negate(builder.blocked(step))))
    if oldest is None:
        return action
    return replace(action, lag_seconds=max(0.0, (cutoff - oldest).total_seconds()))


def count_objects(rt: Runtime, holds: HoldScopes, step: Step) -> PlannedAction:
    """An object dataset's objects due under one rule, and those held."""
    assert step.rule is not None
    due, held = ObjectDatasets(rt.policy, rt.catalog).census(step.dataset, step.rule,
                                                             rt.clock.now(), holds)
    return PlannedAction(step, due, held)


def count_expiry(rt: Runtime, holds: HoldScopes, step: Step) -> PlannedAction:
    """A cache dataset's keys that would outlive its maximum TTL, and those held."""
    over, held = CacheDatasets(rt.policy, rt.catalog).census(step.dataset, rt.clock.now(),
                                                             holds)
    return PlannedAction(step, over, held)
