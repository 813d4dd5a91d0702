"""The monthly compliance report: what lethe deleted, proved, kept and owed in a month.

`assemble` is pure (sources in, a frozen report out), so every figure can be checked
against records a test wrote; `build_report` reads the sources and assembles. The
report names datasets, runs, holds and requests by id; a subject appears only as a
fingerprint, and request identities never leave the control store.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields, is_dataclass
from datetime import date, datetime
from typing import Any

from lethe.control.requests import RequestRecord
from lethe.reports.ages import AgeReading
from lethe.reports.lag import LagLine, deletion_lags
from lethe.reports.period import parse_month
from lethe.reports.sources import Sources, gather
from lethe.runtime import Runtime

# Actions after which the rows are gone from the store (archive: moved to the cold tier).
REMOVING = ("delete", "purge", "cascade", "archive", "erasure")
DAY = 86_400.0
FAILED_RUNS = ("failed", "stopped", "completed_with_errors")
OPEN = ("received", "verified", "in_progress")


@dataclass(frozen=True)
class DailyDeletion:
    day: date
    dataset: str
    action: str  # a retention action, or `erasure` for data-subject requests
    source: str  # retention | request
    rows: int


@dataclass(frozen=True)
class DatasetDeletions:
    dataset: str
    classification: str
    actions: dict[str, int]  # action -> rows in the month
    removed: int  # rows gone from the store (REMOVING actions)
    total: int  # rows any action touched
    first: date | None
    last: date | None


@dataclass(frozen=True)
class DayTotal:
    day: date
    rows: int


@dataclass(frozen=True)
class RunLine:
    id: int
    now: datetime
    status: str
    rows: int
    verified: bool  # every step re-counted clean


@dataclass(frozen=True)
class StepLine:
    """A step that did not verify, or did not leave its audit entry."""

    run: int
    dataset: str
    action: str
    remaining: int | None
    error: str | None


@dataclass(frozen=True)
class AuditCheck:
    ok: bool
    entries: int
    first_bad: int | None
    reason: str | None
    checkpoints: int


@dataclass(frozen=True)
class Verification:
    steps: int
    verified: int
    failed: int
    unverified: int  # never re-counted (a run stopped first)
    failures: tuple[StepLine, ...]
    audit: AuditCheck
    evidenced: int  # steps with rows whose audit entry records the same count
    evidence_missing: tuple[StepLine, ...]


@dataclass(frozen=True)
class HoldLine:
    id: int
    scope: str
    reason: str
    placed_at: datetime
    released_at: datetime | None
    placed_in_month: bool
    released_in_month: bool


@dataclass(frozen=True)
class HeldRows:
    dataset: str
    last: int  # held rows the month's last run reported
    peak: int  # the most any run reported


@dataclass(frozen=True)
class BlockedRows:
    """Due rows a foreign key kept: rows the policy retains (or no rule clears) still
    point at them, so deleting them would fail or destroy the referencing rows."""

    dataset: str
    foreign_key: str  # as plans name it: constraint (table.column)
    last: int  # kept at the month's last run of the dataset
    peak: int  # the most any run kept


@dataclass(frozen=True)
class Holds:
    active: tuple[HoldLine, ...]  # in force at any time in the month
    placed: int
    released: int
    active_at_end: int
    kept: tuple[HeldRows, ...]


@dataclass(frozen=True)
class ExceptionLine:
    kind: str  # run-failed | run-stopped | run-completed-with-errors | run-unfinished
    #            | step-error | step-unverified
    run: int
    dataset: str | None
    message: str


@dataclass(frozen=True)
class RequestLine:
    id: int
    kind: str
    subject_kind: str
    status: str
    received_at: datetime
    due_at: datetime
    completed_at: datetime | None
    days_open: float  # to completion, or to the end of the month
    on_time: bool  # completed (or still open at month end) no later than due


@dataclass(frozen=True)
class Requests:
    received: int
    completed: tuple[RequestLine, ...]
    rejected: int
    open_at_end: tuple[RequestLine, ...]
    overdue_at_end: tuple[RequestLine, ...]


@dataclass(frozen=True)
class AgeLine:
    dataset: str
    rule: int | None
    action: str
    column: str
    limit: str
    limit_days: float | None  # None: kept forever
    oldest: datetime | None
    age_days: float | None
    ratio: float | None  # age / limit
    over_limit: bool  # older than the limit plus the allowed lag: a breach
    error: str | None
    grace_days: float = 0.0  # the lag allowed past the limit (deletion_sla, or cadence)
    kept: tuple[tuple[str, int], ...] = ()  # rows past the limit kept, and why


@dataclass(frozen=True)
class ChosenPeriods:
    """A dataset whose retention period each workspace chooses (through the API)."""

    dataset: str
    default: str
    min: str
    max: str
    chosen: tuple[tuple[str, int], ...]  # period -> workspaces that chose it (at the end)
    changes: int  # choices made in the month (audit entries `workspace.retention`)


@dataclass(frozen=True)
class Summary:
    rows_removed: int
    rows_actioned: int
    runs: int
    failed_runs: int
    steps_verified: int
    steps_failed: int
    audit_ok: bool
    holds_active: int
    requests_completed: int
    requests_open: int
    requests_overdue: int
    datasets_over_limit: int


@dataclass(frozen=True)
class MonthlyReport:
    organization: str
    month: str
    start: datetime
    end: datetime
    generated_at: datetime
    summary: Summary
    deletions: tuple[DatasetDeletions, ...]
    daily: tuple[DailyDeletion, ...]
    day_totals: tuple[DayTotal, ...]
    runs: tuple[RunLine, ...]
    verification: Verification
    holds: Holds
    blocked: tuple[BlockedRows, ...]
    exceptions: tuple[ExceptionLine, ...]
    requests: Requests
    ages: tuple[AgeLine, ...]
    lags: tuple[LagLine, ...] = ()  # deletion lag per rule over the month's runs
    chosen_periods: tuple[ChosenPeriods, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values: instants and dates as ISO-8601 text."""
        plain = _plain(self)
        assert isinstance(plain, dict)
        return plain


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def build_report(rt: Runtime, month: str) -> MonthlyReport:
    """The report for `YYYY-MM` (a bad month is a UsageError on `--month`)."""
    return assemble(gather(rt, parse_month(month)))


def assemble(src: Sources) -> MonthlyReport:
    daily = _daily(src)
    deletions = _by_dataset(src, daily)
    totals: dict[date, int] = defaultdict(int)
    for line in daily:
        totals[line.day] += line.rows
    verification = _verification(src)
    holds = _holds(src)
    requests = _requests(src)
    ages = tuple(_age(a, src.generated_at) for a in src.ages)
    runs = tuple(RunLine(r.id, r.now, r.status, sum(a.done for a in r.actions),
                         r.status == "completed"
                         and not any(a.verified is False or a.error for a in r.actions))
                 for r in src.runs)
    summary = Summary(
        rows_removed=sum(d.removed for d in deletions),
        rows_actioned=sum(d.total for d in deletions),
        runs=len(runs), failed_runs=sum(r.status in FAILED_RUNS for r in runs),
        steps_verified=verification.verified, steps_failed=verification.failed,
        audit_ok=verification.audit.ok, holds_active=len(holds.active),
        requests_completed=len(requests.completed), requests_open=len(requests.open_at_end),
        requests_overdue=len(requests.overdue_at_end),
        datasets_over_limit=len({a.dataset for a in ages if a.over_limit}))
    return MonthlyReport(
        organization=src.organization, month=src.month.label, start=src.month.start,
        end=src.month.end, generated_at=src.generated_at, summary=summary,
        deletions=deletions, daily=daily,
        day_totals=tuple(DayTotal(d, totals.get(d, 0)) for d in src.month.days()),
        runs=runs, verification=verification, holds=holds, blocked=_blocked(src),
        exceptions=_exceptions(src),
        requests=requests, ages=ages, lags=deletion_lags(src.runs),
        chosen_periods=tuple(
            ChosenPeriods(name, *bounds, tuple(sorted(counts.items())), changes)
            for name, (bounds, counts, changes) in sorted(src.chosen.items())))


def _daily(src: Sources) -> tuple[DailyDeletion, ...]:
    """Rows per day, dataset and action: run steps by the run's clock, erasures by the
    day their request completed (the request keeps the rows erased per dataset)."""
    rows: dict[tuple[date, str, str, str], int] = defaultdict(int)
    for run in src.runs:
        for a in run.actions:
            if a.done:
                rows[(run.now.date(), a.dataset, a.action, "retention")] += a.done
    for req in src.requests:
        if req.kind == "erasure" and req.status == "completed" \
                and src.month.contains(req.completed_at):
            assert req.completed_at is not None
            for dataset, counts in (req.result or {}).get("datasets", {}).items():
                if counts.get("erased"):
                    rows[(req.completed_at.date(), dataset, "erasure", "request")] += \
                        int(counts["erased"])
    return tuple(DailyDeletion(day, dataset, action, source, n)
                 for (day, dataset, action, source), n in sorted(rows.items()))


def _by_dataset(src: Sources, daily: tuple[DailyDeletion, ...]
                ) -> tuple[DatasetDeletions, ...]:
    lines = []
    for dataset in sorted({d.dataset for d in daily}):
        mine = [d for d in daily if d.dataset == dataset]
        actions: dict[str, int] = defaultdict(int)
        for d in mine:
            actions[d.action] += d.rows
        lines.append(DatasetDeletions(
            dataset, src.classes.get(dataset, ""), dict(sorted(actions.items())),
            sum(n for a, n in actions.items() if a in REMOVING), sum(actions.values()),
            min(d.day for d in mine), max(d.day for d in mine)))
    return tuple(lines)


def _verification(src: Sources) -> Verification:
    steps = [(run, a) for run in src.runs for a in run.actions]
    failures = tuple(StepLine(run.id, a.dataset, a.action, a.remaining, a.error)
                     for run, a in steps if a.verified is False or a.error)
    missing = tuple(
        StepLine(run.id, a.dataset, a.action, a.remaining, "no matching audit entry")
        for run, a in steps if a.done
        and src.evidence.get((run.id, a.dataset, a.rule, a.action, a.parent)) != a.done)
    audit = src.audit
    return Verification(
        steps=len(steps), verified=sum(a.verified is True for _, a in steps),
        failed=len(failures),
        unverified=sum(a.verified is None and not a.error for _, a in steps),
        failures=failures,
        audit=AuditCheck(audit.ok, audit.entries, audit.first_bad, audit.reason,
                         audit.checkpoints),
        evidenced=sum(1 for _, a in steps if a.done) - len(missing), evidence_missing=missing)


def _holds(src: Sources) -> Holds:
    month = src.month
    active = tuple(
        HoldLine(h.id, src.hold_scopes.get(h.id, h.scope), h.reason, h.placed_at,
                 h.released_at, month.contains(h.placed_at), month.contains(h.released_at))
        for h in src.holds
        if h.placed_at < month.end and (h.released_at is None or h.released_at >= month.start))
    held: dict[str, list[int]] = defaultdict(list)
    for run in src.runs:
        per_run: dict[str, int] = defaultdict(int)
        for a in run.actions:
            if a.action != "cascade":  # its held rows are the parent's, counted there
                per_run[a.dataset] += a.held
        for dataset, n in per_run.items():
            held[dataset].append(n)
    kept = tuple(HeldRows(d, ns[-1], max(ns)) for d, ns in sorted(held.items()) if max(ns))
    return Holds(active, sum(h.placed_in_month for h in active),
                 sum(h.released_in_month for h in active),
                 sum(h.released_at is None or h.released_at >= month.end for h in active),
                 kept)


def _blocked(src: Sources) -> tuple[BlockedRows, ...]:
    """Per dataset and foreign key: rows kept at the last run that reached the dataset,
    and at most. A cascade's rows are its parent's, counted there."""
    kept: dict[tuple[str, str], list[int]] = defaultdict(list)
    for run in src.runs:
        per_run: dict[tuple[str, str], int] = defaultdict(int)
        datasets = {a.dataset for a in run.actions}
        for a in run.actions:
            if a.action != "cascade":
                for foreign_key, rows in a.blocked_by:
                    per_run[(a.dataset, foreign_key)] += rows
        for dataset, foreign_key in list(kept):  # reached and kept none: 0
            if dataset in datasets and (dataset, foreign_key) not in per_run:
                per_run[(dataset, foreign_key)] = 0
        for line, n in per_run.items():
            kept[line].append(n)
    return tuple(BlockedRows(d, k, ns[-1], max(ns)) for (d, k), ns in sorted(kept.items()))


def _request_line(req: RequestRecord, until: datetime) -> RequestLine:
    done = req.completed_at if req.completed_at is not None and req.completed_at < until \
        else None
    end = done or until
    # As of `until`: a request completed later was still open then, in a status unknown.
    status = "completed" if done else (req.status if req.status in OPEN else "open")
    return RequestLine(req.id, req.kind, req.subject_kind, status,
                       req.received_at, req.due_at, done,
                       round((end - req.received_at).total_seconds() / DAY, 2),
                       end <= req.due_at)


def _open_at(req: RequestRecord, instant: datetime) -> bool:
    """Was the request open at `instant`? Received before it, and not completed or
    rejected by then (a rejection is dated by the record's last update)."""
    if req.received_at >= instant:
        return False
    if req.status == "completed":
        return req.completed_at is None or req.completed_at >= instant
    if req.status == "rejected":
        return req.updated_at >= instant
    return True


def _requests(src: Sources) -> Requests:
    month = src.month
    completed = tuple(_request_line(r, month.end) for r in src.requests
                      if r.status == "completed" and month.contains(r.completed_at))
    open_at_end = tuple(_request_line(r, month.end) for r in src.requests
                        if _open_at(r, month.end))
    return Requests(
        received=sum(month.contains(r.received_at) for r in src.requests),
        completed=completed,
        rejected=sum(r.status == "rejected" and month.contains(r.updated_at)
                     for r in src.requests),
        open_at_end=open_at_end,
        overdue_at_end=tuple(r for r in open_at_end if not r.on_time))


def _age(reading: AgeReading, at: datetime) -> AgeLine:
    cutoff = reading.limit.before(at)
    limit_days = None if cutoff is None else (at - cutoff).total_seconds() / DAY
    age_days = None if reading.oldest is None else \
        max(0.0, (at - reading.oldest).total_seconds() / DAY)
    ratio = None if age_days is None or not limit_days else age_days / limit_days
    grace_days = reading.grace.total_seconds() / DAY
    over = age_days is not None and limit_days is not None and \
        age_days > limit_days + grace_days
    return AgeLine(reading.dataset, reading.rule, reading.action, reading.column,
                   str(reading.limit), None if limit_days is None else round(limit_days, 2),
                   reading.oldest, None if age_days is None else round(age_days, 2),
                   None if ratio is None else round(ratio, 4), over, reading.error,
                   round(grace_days, 4), reading.kept)


def _exceptions(src: Sources) -> tuple[ExceptionLine, ...]:
    lines: list[ExceptionLine] = []
    for run in src.runs:
        if run.status in FAILED_RUNS:
            lines.append(ExceptionLine(f"run-{run.status}".replace("_", "-"), run.id, None,
                                       run.error or run.status))
        elif run.status == "running":
            lines.append(ExceptionLine("run-unfinished", run.id, None,
                                       "not finished when the report was made (still "
                                       "running, or killed: the next run resumes it)"))
        for a in run.actions:
            if a.error:
                lines.append(ExceptionLine("step-error", run.id, a.dataset, a.error))
            elif a.verified is False:
                lines.append(ExceptionLine("step-unverified", run.id, a.dataset,
                                           f"{a.remaining} due rows remained after the "
                                           f"{a.action}"))
    return tuple(lines)
