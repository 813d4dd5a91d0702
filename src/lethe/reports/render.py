"""The monthly report as HTML, Markdown and JSON, and written to a directory.

HTML and Markdown come from Jinja2 templates in `templates/` (monthly*.j2); the HTML
template escapes every value, the Markdown one keeps free text inside its table cell.
JSON is `MonthlyReport.as_dict()`, the same figures the API returns.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from lethe.errors import UsageError
from lethe.reports.charts import age_chart, deletion_chart, lag_chart
from lethe.reports.monthly import MonthlyReport

FORMATS = ("html", "markdown", "json")
SUFFIX = {"html": "html", "markdown": "md", "json": "json"}


def _number(value: int | float) -> str:
    return f"{value:,}"


def _one_decimal(value: float) -> str:
    return f"{value:,.1f}"


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _day(value: date | datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d")


def _markdown_cell(value: Any) -> str:
    """One line, no cell breaks, no markup: a reason cannot reshape the table."""
    text = " ".join(str(value).split())
    for ch in "\\|*_`[]<>#":
        text = text.replace(ch, "\\" + ch)
    return text


@cache
def _environment(markup: bool) -> jinja2.Environment:
    # `.html.j2` is not an extension select_autoescape knows, so escaping is switched on
    # explicitly; StrictUndefined turns a template typo into an error, not a blank cell.
    env = jinja2.Environment(loader=jinja2.PackageLoader("lethe.reports", "templates"),
                             autoescape=markup, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=not markup,
                             lstrip_blocks=not markup)
    env.filters.update(n=_number, n1=_one_decimal, pct=_percent, when=_when, day=_day,
                       md=_markdown_cell)
    return env


def _context(report: MonthlyReport) -> dict[str, Any]:
    return {"r": report, "s": report.summary, "deletion_chart": deletion_chart(report),
            "age_chart": age_chart(report), "lag_chart": lag_chart(report)}


def render_html(report: MonthlyReport) -> str:
    return _environment(True).get_template("monthly.html.j2").render(_context(report))


def render_markdown(report: MonthlyReport) -> str:
    return tidy_markdown(_environment(False).get_template("monthly.md.j2")
                         .render(_context(report)))


def _block(line: str) -> str:
    if line.startswith("#"):
        return "heading"
    if line.startswith("|"):
        return "table"
    return "list" if line.startswith("- ") else "text"


def tidy_markdown(text: str) -> str:
    """One blank line between blocks of different kinds (a table right after a heading
    is not a table to most renderers), and never two: the template stays readable."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            if out and out[-1]:
                out.append("")
            continue
        if out and out[-1] and ("heading" in (_block(out[-1]), _block(line))
                                or _block(out[-1]) != _block(line)):
            out.append("")
        out.append(line)
    return "\n".join(out).strip() + "\n"


def render_json(report: MonthlyReport) -> str:
    return json.dumps(report.as_dict(), indent=2) + "\n"


RENDERERS = {"html": render_html, "markdown": render_markdown, "json": render_json}


def formats_of(choice: str) -> tuple[str, ...]:
    """`html`, `markdown`, `json` or `all`; anything else is a usage error."""
    if choice == "all":
        return FORMATS
    if choice not in FORMATS:
        raise UsageError(f"unknown format {choice!r} (html, markdown, json or all)",
                         path="--format")
    return (choice,)


def write_report(report: MonthlyReport, out_dir: Path,
                 formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write `lethe-report-YYYY-MM.{html,md,json}` into `out_dir`, each atomically."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the directory: {exc.strerror}",
                         path=str(out_dir)) from None
    written = []
    for fmt in formats:
        path = out_dir / f"lethe-report-{report.month}.{SUFFIX[fmt]}"
        _write_atomically(path, RENDERERS[fmt](report))
        written.append(path)
    return written


def _write_atomically(path: Path, text: str) -> None:
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise UsageError(f"cannot write: {exc.strerror}", path=str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
