"""The monthly compliance report, on SQLite and PostgreSQL: its figures are what happened.

The scenario: an erasure opened in May and never run (overdue in June), a legal hold on
`sessions` placed in May and released in June, retention runs on June 1st and 15th, an
access request answered in June, and an erasure opened in June that completes, late, in
July. The test counts rows in the tables itself and compares.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lethe.engine.execute import RunResult, execute
from lethe.engine.plan import build_plan
from lethe.errors import UsageError
from lethe.holds import parse_scope, place_hold, release_hold
from lethe.reports.charts import nice_ceiling
from lethe.reports.monthly import MonthlyReport, build_report
from lethe.reports.period import Month, parse_month, previous_month
from lethe.reports.render import formats_of, render_html, render_markdown, write_report
from lethe.requests.service import open_request, run_request
from lethe.stores.base import TRUE, Eq
from lethe.stores.sql import SqlStore, normalize_url
from tests.fixtures import NOW, build_app, events, ids, runtime, sessions, write_policy

MAY_1 = datetime(2026, 5, 1, tzinfo=UTC)
MAY_20 = datetime(2026, 5, 20, tzinfo=UTC)
JUNE_3 = datetime(2026, 6, 3, tzinfo=UTC)
JUNE_10 = datetime(2026, 6, 10, tzinfo=UTC)
JUNE_15 = datetime(2026, 6, 15, tzinfo=UTC)
JULY_5 = datetime(2026, 7, 5, tzinfo=UTC)


@dataclass
class Happened:
    policy: Path
    engine: sa.Engine
    first: RunResult
    second: RunResult
    events_removed: dict[date, int]  # counted in the table, not read from lethe
    sessions_removed: int
    sessions_held: int
    hold: int
    subject_hold: int
    overdue: int  # request ids
    answered: int
    late: int
    erased_in_july: dict[str, int]


def _scenario(url: str, tmp_path: Path) -> Happened:
    engine = build_app(url)
    policy = write_policy(tmp_path, url)
    rt = runtime(policy, MAY_1)
    overdue = open_request(rt, "erasure", "user", ["email=user7@example.com"]).id
    rt = runtime(policy, MAY_20)
    hold = place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, None, None,
                                                                 "sessions"), "litigation")
    rt = runtime(policy, NOW)
    before = ids(engine, events), ids(engine, sessions)
    first = execute(rt, build_plan(rt))
    after_first = ids(engine, events)
    held = sum(a.planned.held for a in first.actions
               if a.planned.step.dataset == "sessions" and a.planned.step.action != "cascade")
    rt = runtime(policy, JUNE_3)
    subject_hold = place_hold(rt.control, rt.audit, rt.clock,
                              parse_scope(rt.policy, "user:3", None, None), "audit | <b>x</b>")
    answered = open_request(rt, "access", "user", ["email=user8@example.com"]).id
    run_request(rt, answered, tmp_path / "out")
    late = open_request(rt, "erasure", "user", ["email=user9@example.com"]).id
    run_request(rt, late, tmp_path / "out")  # soft-deletes; erasure once recover_for passes
    rt = runtime(policy, JUNE_10)
    release_hold(rt.control, rt.audit, rt.clock, hold, "settled")
    rt = runtime(policy, JUNE_15)
    second = execute(rt, build_plan(rt))
    after = ids(engine, events), ids(engine, sessions)
    rt = runtime(policy, JULY_5)
    outcome = run_request(rt, late, tmp_path / "out")
    assert outcome.record.status == "completed"
    return Happened(
        policy, engine, first, second,
        {NOW.date(): len(before[0] - after_first), JUNE_15.date(): len(after_first - after[0])},
        len(before[1] - after[1]), held, hold, subject_hold, overdue, answered, late,
        {name: d.erased for name, d in outcome.datasets.items() if d.erased})


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def happened(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Happened]:
    """One scenario per database, shared by the tests that only read it."""
    directory = tmp_path_factory.mktemp("monthly")
    if request.param == "sqlite":
        yield _scenario(f"sqlite:///{directory / 'app.db'}", directory)
        return
    server = request.getfixturevalue("postgres_server")  # skips, or fails under CI
    name = f"lethe_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalize_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(normalize_url(server)).set(database=name)
    try:
        result = _scenario(url.render_as_string(hide_password=False), directory)
        yield result
        result.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _report(policy: Path, month: str, at: datetime) -> MonthlyReport:
    rt = runtime(policy, at)
    try:
        return build_report(rt, month)
    finally:
        rt.close()


def test_deleted_rows_per_dataset_and_day_are_what_left_the_tables(happened: Happened) -> None:
    report = _report(happened.policy, "2026-06", datetime(2026, 7, 1, tzinfo=UTC))
    by_dataset = {d.dataset: d for d in report.deletions}
    removed_events = sum(happened.events_removed.values())
    assert removed_events > 0 and happened.sessions_removed > 0
    assert by_dataset["events"].actions == {"delete": removed_events}
    assert (by_dataset["events"].first, by_dataset["events"].last) == (NOW.date(),
                                                                       JUNE_15.date())
    daily_events = {d.day: d.rows for d in report.daily if d.dataset == "events"}
    assert daily_events == {day: n for day, n in happened.events_removed.items() if n}
    assert by_dataset["sessions"].removed == happened.sessions_removed
    done = sum(a.done for r in (happened.first, happened.second) for a in r.actions)
    assert report.summary.rows_actioned == done == sum(d.rows for d in report.day_totals)
    assert len(report.day_totals) == 30
    assert [r.id for r in report.runs] == [happened.first.run, happened.second.run]
    assert all(r.verified for r in report.runs)


def test_verification_counts_steps_and_checks_the_audit_chain(happened: Happened) -> None:
    report = _report(happened.policy, "2026-06", JULY_5)
    steps = len(happened.first.actions) + len(happened.second.actions)
    v = report.verification
    assert (v.steps, v.verified, v.failed) == (steps, steps, 0)
    assert v.audit.ok and v.audit.entries > steps
    with_rows = sum(1 for r in (happened.first, happened.second) for a in r.actions if a.done)
    assert v.evidenced == with_rows and v.evidence_missing == ()
    assert report.exceptions == ()


def test_an_edited_audit_entry_shows_in_the_report(app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    rt = runtime(policy, NOW)
    execute(rt, build_plan(rt))
    assert build_report(rt, "2026-06").verification.audit.ok
    audit = sa.Table("lethe_audit", sa.MetaData(), autoload_with=rt.control.engine)
    with rt.control.engine.begin() as conn:
        seq, details = next(row for row in conn.execute(
            sa.select(audit.c.seq, audit.c.details).where(audit.c.action == "retention.delete")
            .order_by(audit.c.seq)) if json.loads(row.details)["done"] > 0)
        conn.execute(audit.update().where(audit.c.seq == seq)
                     .values(details=details.replace('"done":', '"done":1')))
    report = build_report(rt, "2026-06")
    rt.close()
    assert not report.verification.audit.ok
    assert report.verification.audit.first_bad == seq
    assert not report.summary.audit_ok
    assert len(report.verification.evidence_missing) >= 1


def test_holds_in_force_and_rows_they_kept(happened: Happened) -> None:
    report = _report(happened.policy, "2026-06", JULY_5)
    holds = {h.id: h for h in report.holds.active}
    assert set(holds) == {happened.hold, happened.subject_hold}
    dataset_hold = holds[happened.hold]
    assert dataset_hold.scope == "dataset:sessions"
    assert (dataset_hold.placed_in_month, dataset_hold.released_in_month) == (False, True)
    assert dataset_hold.released_at == JUNE_10
    assert (report.holds.placed, report.holds.released, report.holds.active_at_end) == (1, 1, 1)
    kept = {k.dataset: k for k in report.holds.kept}
    assert happened.sessions_held > 0
    assert kept["sessions"].peak == happened.sessions_held
    # A subject is shown by fingerprint only.
    subject = holds[happened.subject_hold].scope
    assert subject.startswith("subject:user:") and subject != "subject:user:3"


def test_requests_open_overdue_and_answered_within_the_deadline(happened: Happened) -> None:
    june = _report(happened.policy, "2026-06", JULY_5)
    assert june.requests.received == 2
    assert [(r.id, r.on_time) for r in june.requests.completed] == [(happened.answered, True)]
    assert {r.id for r in june.requests.open_at_end} == {happened.overdue, happened.late}
    assert [r.id for r in june.requests.overdue_at_end] == [happened.overdue]
    assert june.summary.requests_overdue == 1
    overdue = june.requests.overdue_at_end[0]
    assert overdue.days_open == 61.0 and overdue.status == "received"

    july = _report(happened.policy, "2026-07", JULY_5)
    assert [(r.id, r.on_time) for r in july.requests.completed] == [(happened.late, False)]
    erasures = {d.dataset: d.rows for d in july.daily if d.source == "request"}
    assert erasures == happened.erased_in_july and erasures
    assert {d.day for d in july.daily if d.source == "request"} == {JULY_5.date()}
    assert {h.id for h in july.holds.active} == {happened.subject_hold}


def test_the_report_carries_no_personal_data(happened: Happened) -> None:
    report = _report(happened.policy, "2026-06", JULY_5)
    text = json.dumps(report.as_dict()) + render_html(report) + render_markdown(report)
    assert "@example.com" not in text and "User 7" not in text


def test_a_month_without_activity_reports_zeros(happened: Happened) -> None:
    report = _report(happened.policy, "2026-01", JULY_5)
    s = report.summary
    assert (s.rows_removed, s.rows_actioned, s.runs, s.holds_active, s.requests_completed,
            s.requests_open, s.requests_overdue) == (0, 0, 0, 0, 0, 0, 0)
    assert report.deletions == () and report.daily == () and report.exceptions == ()
    assert [d.rows for d in report.day_totals] == [0] * 31
    assert report.verification.steps == 0 and report.verification.audit.ok
    html = render_html(report)
    assert "No data was deleted" in html and "No retention run in 2026-01" in html


def test_data_age_against_the_limit(app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    rt = runtime(policy, MAY_20)
    place_hold(rt.control, rt.audit, rt.clock, parse_scope(rt.policy, None, None, "sessions"),
               "litigation")
    rt = runtime(policy, NOW)
    execute(rt, build_plan(rt))
    report = _report(policy, "2026-06", JUNE_15)
    ages = {(a.dataset, a.rule): a for a in report.ages}
    # sessions: the held 60-day-old sessions, 74 days old on the 15th, against 30 days:
    # kept by the hold, an exception with its reason, not a breach (issue 19, item 2)
    held = ages[("sessions", 0)]
    assert (held.oldest, held.limit_days, held.over_limit) == (None, 30.0, False)
    assert held.kept == (("held by a legal hold", 10),)
    # analytics: rows past 12 months were anonymized; the 100-day-old rest still identify
    assert ages[("analytics", 0)].age_days == 114.0
    assert not ages[("analytics", 0)].over_limit
    assert ages[("invoices", 0)].age_days == 414.0 and ages[("invoices", 0)].limit == "7y"
    # no run since the 1st (and no schedule: no lag allowed): failed events (30 days)
    # received 20 days before it are 34 days old, a breach; the soft-deleted user whose
    # purge the held sessions keep is an exception too
    assert (ages[("events", 1)].age_days, ages[("events", 1)].over_limit) == (34.0, True)
    purge = ages[("users", None)]
    assert (purge.over_limit, purge.kept) == (False, (("held by a legal hold", 1),))
    assert not ages[("events", 0)].over_limit
    assert report.summary.datasets_over_limit == 1
    for text in (render_markdown(report), render_html(report)):
        assert "held by a legal hold" in text


def test_the_lag_allowed_is_the_sla_else_the_schedule(app_url: str, tmp_path: Path) -> None:
    """Past its limit means older than the limit plus the deletion SLA, or, without one,
    the time between the runs of the schedules covering the dataset."""
    build_app(app_url)
    rt = runtime(write_policy(tmp_path, app_url), NOW)
    execute(rt, build_plan(rt))
    rt.close()
    # the failed events are 34 days old on the 15th against 30 days: within a 7-day SLA,
    # and within a weekly schedule's lag; not within a daily one
    for extra, over in [({"deletion_sla": "7d"}, False),
                        ({"schedules": {"weekly": {"cron": "0 3 * * 1"}}}, False),
                        ({"schedules": {"daily": {"cron": "0 3 * * *",
                                                  "datasets": ["events"]}}}, True),
                        ({"schedules": {"users": {"cron": "0 3 * * 1",
                                                  "datasets": ["users"]}}}, True)]:
        policy = write_policy(tmp_path, app_url, **extra)
        events = {(a.dataset, a.rule): a for a in _report(policy, "2026-06", JUNE_15).ages}
        assert events[("events", 1)].over_limit is over, extra


def test_the_oldest_row_is_read_by_instant_whatever_the_column_type(app_url: str) -> None:
    engine = sa.create_engine(normalize_url(app_url))
    meta = sa.MetaData()
    table = sa.Table("times", meta, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("kind", sa.String(10)),
                     sa.Column("at", sa.DateTime(timezone=True)),
                     sa.Column("epoch", sa.BigInteger), sa.Column("millis", sa.BigInteger))
    meta.create_all(engine)
    old, new = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(table.insert(), [
            {"id": i, "kind": kind, "at": t, "epoch": int(t.timestamp()),
             "millis": int(t.timestamp() * 1000)}
            for i, (kind, t) in enumerate([("a", new), ("b", old), ("a", new + timedelta(1))])])
    engine.dispose()
    store = SqlStore("app", app_url)
    try:
        for column in ("at", "epoch", "millis"):
            assert store.oldest("times", column, TRUE) == old, column
            assert store.oldest("times", column, Eq("kind", "a")) == new, column
        assert store.oldest("times", "at", Eq("kind", "none")) is None
    finally:
        store.close()


def test_months_are_checked() -> None:
    assert parse_month("2026-02").days()[-1] == date(2026, 2, 28)
    assert parse_month("2026-12").end == datetime(2027, 1, 1, tzinfo=UTC)
    assert previous_month(datetime(2026, 1, 5, tzinfo=UTC)) == Month(2025, 12)
    for bad in ("2026-13", "2026-6", "june", "2026-00", ""):
        with pytest.raises(UsageError) as caught:
            parse_month(bad)
        assert caught.value.path == "--month"
    with pytest.raises(UsageError):
        formats_of("pdf")
    assert formats_of("all") == ("html", "markdown", "json")
    assert [nice_ceiling(x) for x in (0, 7, 10, 11, 140, 4000)] == [1, 10, 10, 20, 200, 5000]


def test_free_text_is_escaped_in_html_and_kept_in_its_markdown_cell(happened: Happened,
                                                                      tmp_path: Path) -> None:
    report = _report(happened.policy, "2026-06", JULY_5)
    html = render_html(report)
    assert "audit | &lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    markdown = render_markdown(report)
    row = next(line for line in markdown.splitlines() if "audit \\|" in line)
    assert row.count(" | ") == 4  # five cells: the reason's bar is escaped, not a border
    paths = write_report(report, tmp_path / "out")
    assert [p.name for p in paths] == ["lethe-report-2026-06.html", "lethe-report-2026-06.md",
                                       "lethe-report-2026-06.json"]
    assert json.loads(paths[2].read_text(encoding="utf-8")) == report.as_dict()


def test_the_cli_writes_the_files_and_prints_one_json_object(
        happened: Happened, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lethe.cli.app import main

    out = tmp_path / "reports"
    with pytest.raises(SystemExit) as done:
        main(["report", "--month", "2026-06", "--policy", str(happened.policy), "--out",
              str(out), "--format", "markdown", "--now", "2026-07-02T00:00:00Z", "--json"])
    assert done.value.code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["month"] == "2026-06"
    assert data["summary"]["requests_overdue"] == 1
    assert data["files"] == [str(out / "lethe-report-2026-06.md")]
    assert (out / "lethe-report-2026-06.md").read_text(encoding="utf-8").startswith(
        "# Monthly compliance report — 2026-06")
    with pytest.raises(SystemExit) as failed:
        main(["report", "--month", "2026-6", "--policy", str(happened.policy), "--json"])
    assert failed.value.code == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert (error["type"], error["path"]) == ("UsageError", "--month")


def test_the_deletion_lag_is_measured_from_run_records(app_url: str, tmp_path: Path) -> None:
    """Issue 19, item 2: each run records how long its oldest due row had been past its
    limit; the report gives, per rule, the median and the longest over the month."""
    build_app(app_url)
    policy = write_policy(tmp_path, app_url)
    rt = runtime(policy, NOW)
    first = execute(rt, build_plan(rt))
    rt.close()
    [sessions] = [a for a in first.actions if a.planned.step.dataset == "sessions"
                  and a.planned.step.parent is None]
    # the old sessions were last seen 60 days ago against 30 days: 30 days past the limit
    assert sessions.planned.lag_seconds == 30 * 86400
    rt = runtime(policy, NOW + timedelta(days=2))
    execute(rt, build_plan(rt))  # nothing of the sessions due again: no lag recorded
    rt.close()
    report = _report(policy, "2026-06", JUNE_15)
    lags = {(line.dataset, line.rule): line for line in report.lags}
    assert (lags[("sessions", 0)].runs, lags[("sessions", 0)].max_hours) == (1, 720.0)
    assert all(line.max_hours >= line.median_hours >= 0 for line in report.lags)
    assert "Deletion lag" in render_markdown(report) and "720.0" in render_markdown(report)


def test_the_periods_workspaces_chose_are_reported_with_the_month_s_choices(
        app_url: str, tmp_path: Path) -> None:
    from lethe.commands.periods import set_retention_period

    build_app(app_url)
    choosable = [{"when": {"status": "processed"}, "after": "received_at",
                  "keep": {"default": "90d", "min": "7d", "max": "365d"}}]
    policy = write_policy(tmp_path, app_url, datasets__events__retention=choosable)
    rt = runtime(policy, NOW)
    set_retention_period(rt, "ws_a", "events", "30d")
    set_retention_period(rt, "ws_b", "events", "300d")
    set_retention_period(rt, "ws_c", "events", "30d")
    set_retention_period(rt, "ws_c", "events", None)  # back to the default
    rt.audit.key()  # the organization's key, as `lethe init` makes it (verify needs it)
    rt.close()
    choosable[0]["keep"]["max"] = "180d"  # tightened since: 300d applies as 180d
    policy = write_policy(tmp_path, app_url, datasets__events__retention=choosable)
    wall = datetime.now(UTC)  # the audit log stamps choices with the wall clock's time
    report = _report(policy, wall.strftime("%Y-%m"), wall)
    [line] = report.chosen_periods
    assert (line.dataset, line.default, line.min, line.max) == ("events", "90d", "7d", "180d")
    assert dict(line.chosen) == {"30d": 1, "180d": 1}
    assert line.changes == 4
    assert report.as_dict()["chosen_periods"][0]["changes"] == 4
    assert "| `events` | 90d | 7d to 180d | 180d: 1; 30d: 1 | 4 |" in render_markdown(report)
    assert "Retention periods workspaces chose" in render_html(report)
    earlier = _report(policy, "2026-04", NOW)
    assert earlier.chosen_periods[0].changes == 0  # none were made that month
