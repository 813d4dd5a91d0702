"""`lethe report`: the monthly compliance report as HTML, Markdown and JSON files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, settings
from lethe.cli.output import emit_json, stdout, table
from lethe.reports.period import parse_month, previous_month

MonthOpt = Annotated[str | None, typer.Option(
    "--month", help="The month to report, YYYY-MM (default: the last whole month).",
    show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", help="Directory the report files go to.")]
FormatOpt = Annotated[str, typer.Option("--format", help="html, markdown, json or all.")]


def report_cmd(ctx: typer.Context, month: MonthOpt = None,
               out: OutOpt = Path("lethe-reports"), fmt: FormatOpt = "all",
               policy: PolicyOpt = None, json_out: JsonOpt = False,
               now: NowOpt = None) -> None:
    """Write the monthly compliance report: deletions, verification, holds, requests."""
    from lethe.commands.reports import monthly_report
    from lethe.reports.render import formats_of, write_report

    s = settings(ctx, policy, json_out, now)
    chosen = parse_month(month) if month else previous_month(s.clock().now())
    formats = formats_of(fmt)
    with open_runtime(s) as rt:
        report = monthly_report(rt, chosen.label)
    paths = write_report(report, out, formats)
    if s.json:
        emit_json({**report.as_dict(), "files": [str(p) for p in paths]})
        return
    summary = report.summary
    table(f"Compliance report {report.month} — {report.organization}", ["figure", "value"], [
        ["rows deleted", summary.rows_removed], ["rows handled", summary.rows_actioned],
        ["runs (not clean)", f"{summary.runs} ({summary.failed_runs})"],
        ["steps verified / failed", f"{summary.steps_verified} / {summary.steps_failed}"],
        ["audit chain", "intact" if summary.audit_ok else "BROKEN"],
        ["holds in force", summary.holds_active],
        ["requests completed", summary.requests_completed],
        ["requests open / overdue", f"{summary.requests_open} / {summary.requests_overdue}"],
        ["datasets past a limit", summary.datasets_over_limit]])
    for path in paths:
        stdout.print(f"wrote {path}", markup=False)
