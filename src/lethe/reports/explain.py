"""`plan --explain DATASET`: which rule and period apply to a dataset's rows, the cutoff,
and why each row that is not deleted now stays — the question every retention tool is
asked ("why wasn't it deleted?").

Every number is a count of the same conditions the plan and the run use (the step
builder's `due`, `held` and `blocked`, the rules' `when` and `after`), narrowed to the
rows asked about (all of them, a subject's, a workspace's): the explanation cannot say
something the enforcement does not do. Each rule's rows are split into disjoint reasons:

- `due`: deleted (or soft-deleted, anonymized, archived) by the next `lethe run`;
- `held`: due, but a hold keeps them (which holds, and how many rows each);
- `blocked`: due, not held, but a foreign key from kept data still points at them;
- `not-yet`: the period has not passed (and when the oldest of them will be due);
- `after-null`: the rule's `after` column is NULL, so the period never starts;
- `done`: old enough, already in the rule's end state (soft-deleted, anonymized);
- `forever`: the rule keeps them forever.

Rows no rule's `when` matches are `no-rule`. A cascade from a parent is its own line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lethe.control.store import Hold
from lethe.engine.plan import blocked_by, builder_for
from lethe.engine.steps import (
    Step,
    StepBuilder,
    belongs_to_children,
    rule_aged,
    soft_deleted,
)
from lethe.errors import UsageError
from lethe.holds import HoldScopes, Scope
from lethe.policy.conditions import governed_by, when_condition
from lethe.policy.durations import Duration
from lethe.policy.graph import children_first
from lethe.policy.periods import Keep, keeps_a_while
from lethe.runtime import Runtime
from lethe.stores.base import (
    FALSE,
    TRUE,
    Condition,
    Eq,
    IsNull,
    Older,
    all_of,
    any_of,
    negate,
)

SHOWN_HOLDS = 20  # holds attributed one by one; more are summed as "other holds"


@dataclass(frozen=True)
class Reason:
    reason: str  # due | held | blocked | not-yet | after-null | done | forever | cascade
    rows: int
    detail: str
    by: tuple[tuple[str, int], ...] = ()  # the holds or foreign keys, and their rows

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "rows": self.rows, "detail": self.detail,
                "by": [{"name": name, "rows": rows} for name, rows in self.by]}


@dataclass(frozen=True)
class RuleLine:
    step: Step
    keep: str | None  # "30d", "forever"; None for a cascade
    after: str | None  # the time column the period runs from
    when: dict[str, Any]
    cutoff: datetime | None
    reasons: tuple[Reason, ...]
    oldest_waiting: datetime | None = None  # the oldest `not-yet` row's time
    due_from: datetime | None = None  # ... and when it becomes due

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.step.rule, "action": self.step.action, "parent": self.step.parent,
                "keep": self.keep, "after": self.after, "when": self.when,
                "cutoff": self.cutoff, "oldest_waiting": self.oldest_waiting,
                "due_from": self.due_from, "reasons": [r.as_dict() for r in self.reasons]}


@dataclass(frozen=True)
class Explanation:
    dataset: str
    now: datetime
    scope: dict[str, str]  # {} for every row; never the subject's key (it is PII)
    rows: int
    lines: tuple[RuleLine, ...]
    no_rule: int
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "now": self.now, "scope": self.scope,
                "rows": self.rows, "rules": [line.as_dict() for line in self.lines],
                "no_rule": self.no_rule, "notes": list(self.notes)}


def explain(rt: Runtime, dataset: str, scope: Scope | None = None) -> Explanation:
    """Why the rows of `dataset` (those `scope` names, if given) are due or stay."""
    if dataset not in rt.policy.datasets:
        raise UsageError(f"unknown dataset {dataset!r}", path="--explain")
    rt.prepare()
    builder = builder_for(rt, rt.clock.now(), periods=True)
    if dataset not in builder.keys:
        raise UsageError(f"{dataset!r} is not a table of rows (objects and cache keys are "
                         "not explained)", path="--explain")
    holds = rt.hold_scopes(builder)
    # as the whole plan sees the database: each step after those before it have run
    builder = builder.ahead(holds, children_first(rt.select(None), builder.dependencies()))
    ds = rt.policy.datasets[dataset]
    store = rt.catalog.store_of(dataset)
    table = ds.table or ""
    within, shown = _scope(rt, builder, dataset, scope)

    def count(where: Condition) -> int:
        return 0 if where == FALSE else store.count(table, all_of(within, where))

    lines = [_cascade(builder, holds, rt, step, count, within)
             for step in _cascades_into(builder, dataset)]
    lines += [_rule(builder, holds, rt, step, count, within) for step in builder.own_steps(dataset)]
    governed = any_of(*(when_condition(r.when, rt.policy, ds) for r in ds.retention)) \
        if ds.retention else FALSE
    if ds.soft_delete is not None:  # soft-deleted rows are the purge's (its own line)
        governed = any_of(governed, soft_deleted(ds.soft_delete))
    notes = [] if ds.retention else [
        "the dataset has no retention rule: its " + ("live " if ds.soft_delete else "")
        + "rows are kept until a request or a parent's cascade removes them"]
    return Explanation(dataset, builder.now, shown, count(TRUE), tuple(lines),
                       count(negate(governed)), tuple(notes))


def _scope(rt: Runtime, builder: StepBuilder, dataset: str,
           scope: Scope | None) -> tuple[Condition, dict[str, str]]:
    if scope is None:
        return TRUE, {}
    if scope.kind == "workspace":
        column = rt.policy.datasets[dataset].workspace
        if not column:
            raise UsageError(f"dataset {dataset!r} has no workspace column", path="--workspace")
        return Eq(column, scope.value), {"workspace": scope.value}
    assert scope.kind == "subject" and scope.subject_kind is not None
    subject = rt.policy.subjects[scope.subject_kind]
    named = any_of(*(Eq(identity, scope.value) for identity in subject.identities))
    where = named if dataset == subject.dataset else \
        builder.linked_to(dataset, subject.dataset, named)
    if where == FALSE:
        raise UsageError(f"dataset {dataset!r} does not belong to a {scope.subject_kind} "
                         "(no belongs_to path to it)", path="--subject")
    return where, {"subject": scope.subject_kind}


def _cascades_into(builder: StepBuilder, dataset: str) -> list[Step]:
    children = belongs_to_children(builder.policy)
    return [s for ancestor in builder.policy.datasets
            for s in builder.cascade_steps(ancestor, children) if s.dataset == dataset]


def _acting(builder: StepBuilder, holds: HoldScopes, rt: Runtime, step: Step, count: Any,
            within: Condition, due: Condition, verb: str) -> list[Reason]:
    """`due` split into acted on, held (by which holds) and blocked (by which keys)."""
    held = builder.held(step, holds)
    blocked = builder.blocked(step)
    free = all_of(due, negate(held))
    reasons = [Reason("due", count(all_of(free, negate(blocked))),
                      f"{verb} by the next `lethe run`")]
    held_rows = count(all_of(due, held))
    if held_rows:
        reasons.append(Reason("held", held_rows, "due, but a hold keeps them",
                              _by_hold(holds, lambda h: builder.held(step, h), count, due)))
    blocked_rows = count(all_of(free, blocked))
    if blocked_rows:
        ds = rt.policy.datasets[step.dataset]
        by = blocked_by(rt.catalog.store_of(step.dataset), ds.table or "",
                        all_of(within, free), builder.blockers(step.dataset), blocked_rows)
        reasons.append(Reason("blocked", blocked_rows, "due, but a foreign key from kept "
                              "data still points at them", tuple(by)))
    return reasons


def _by_hold(holds: HoldScopes, held_by: Callable[[HoldScopes], Condition], count: Any,
             due: Condition) -> tuple[tuple[str, int], ...]:
    """Each hold's share of the held rows (a row two holds keep counts for both);
    `held_by`: the rows some holds keep, as the step reads them."""
    found: list[tuple[str, int]] = []
    for hold in holds.holds[:SHOWN_HOLDS]:
        one = HoldScopes(holds.policy, holds.graph, holds.keys, [hold])
        rows = count(all_of(due, held_by(one)))
        if rows:
            found.append((_hold_name(hold), rows))
    if len(holds.holds) > SHOWN_HOLDS:
        found.append((f"{len(holds.holds) - SHOWN_HOLDS} other holds (not counted one "
                      "by one)", 0))
    return tuple(found)


def _hold_name(hold: Hold) -> str:
    return f"hold {hold.id} ({hold.scope_kind})"


def _cascade(builder: StepBuilder, holds: HoldScopes, rt: Runtime, step: Step, count: Any,
             within: Condition) -> RuleLine:
    due = builder.due(step, holds)
    verb = "deleted" if builder.removes(step) else "anonymized"
    reasons = _acting(builder, holds, rt, step, count, within, due,
                      f"{verb} with their {step.parent} row")
    return RuleLine(step, None, None, {}, None, tuple(reasons))


def _rule(builder: StepBuilder, holds: HoldScopes, rt: Runtime, step: Step, count: Any,
          within: Condition) -> RuleLine:
    ds = rt.policy.datasets[step.dataset]
    verbs = {"delete": "deleted", "soft-delete": "soft-deleted", "anonymize": "anonymized",
             "archive": "archived", "shred": "made unreadable (key shredded)",
             "purge": "purged"}
    keep: Keep
    if step.action == "purge":
        assert ds.soft_delete is not None
        keep, after, when = ds.soft_delete.recover_for, ds.soft_delete.since, {}
        governed: Condition = soft_deleted(ds.soft_delete)
    else:
        assert step.rule is not None
        index = step.rule
        rule = ds.retention[index]
        keep, after, when = rule.keep, rule.after, dict(rule.when)
        governed = governed_by(ds, step.rule, rt.policy)
    # a period from data has a cutoff per row (its parent's setting): none to show
    cutoff = keep.before(builder.now) if isinstance(keep, Duration) else None
    if not keeps_a_while(keep) or not after:
        reasons = [Reason("forever", count(governed), "the rule keeps them forever")]
        return RuleLine(step, str(keep), after or None, when, None, tuple(reasons))
    aged = Older(after, cutoff) if cutoff is not None else \
        rule_aged(rt.policy, builder.keys, ds, rule, builder.now,
                  builder.chosen.get(step.dataset), builder.known.get((step.dataset, index)))
    due = builder.due(step, holds)
    if step.action == "shred":  # the rows stay; what goes is each subject's key
        held = holds.held(step.dataset, cascading=True)
        reasons = [Reason("due", count(all_of(due, negate(held))), "old enough: the next "
                          "`lethe run` destroys the subject's key if it still exists (the "
                          "plan counts the keys)")]
        held_rows = count(all_of(due, held))
        if held_rows:
            reasons.append(Reason("held", held_rows, "old enough, but a hold keeps the key",
                                  _by_hold(holds, lambda h: h.held(step.dataset,
                                                                   cascading=True),
                                           count, due)))
    else:
        reasons = _acting(builder, holds, rt, step, count, within, due, verbs[step.action])
    old = all_of(governed, aged)
    waiting = all_of(governed, negate(IsNull(after)), negate(aged))
    reasons += [
        Reason("not-yet", count(waiting), f"{keep} after {after} has not passed"
               if cutoff is not None else f"their period ({keep}) after {after} has not "
               "passed"),
        Reason("after-null", count(all_of(governed, IsNull(after))),
               f"{after} is NULL: the period has not started"),
        Reason("done", count(all_of(old, negate(due))),
               "old enough, and already " + ("purged" if step.action == "purge" else
                                             verbs[step.action]))]
    reasons = [r for r in reasons if r.rows or r.reason == "due"]
    oldest = None
    if any(r.reason == "not-yet" for r in reasons):
        oldest = rt.catalog.store_of(step.dataset).oldest(ds.table or "", after,
                                                          all_of(within, waiting))
    return RuleLine(step, str(keep), after, when, cutoff, tuple(reasons), oldest,
                    None if oldest is None or not isinstance(keep, Duration)
                    else keep.after(oldest))


def reason_lines(line: RuleLine) -> Sequence[str]:
    """The reasons of one line as people read them."""
    out = []
    for r in line.reasons:
        by = "; ".join(f"{name}: {rows}" if rows else name for name, rows in r.by)
        out.append(f"{r.reason}: {r.rows} rows — {r.detail}" + (f" ({by})" if by else ""))
    return out
