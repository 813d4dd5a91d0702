"""Chart geometry for the monthly report, computed here so templates only place shapes.

Three charts, drawn as inline SVG by the templates (no plotting library, no script):
deletions per day across the month, each rule's oldest row against its limit, and each
rule's deletion lag (median and longest over the month's runs). Every
shape carries its figure as text (an SVG <title>), and each chart has a title, axis
labels and a description; the tables beside them hold the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lethe.reports.lag import LagLine
from lethe.reports.monthly import AgeLine, MonthlyReport

WIDTH = 760
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 28, 56
AGE_ROW = 26
AGE_LEFT = 200
AGE_CAP = 2.0  # bars stop at twice the limit; the label gives the real age


@dataclass(frozen=True)
class Tick:
    at: float  # pixel position along the axis
    label: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # what a screen reader or a hover says
    over: bool = False  # past the limit (age chart)


@dataclass(frozen=True)
class PlotFrame:
    """An SVG's size and its plot area, in pixels: what every chart's template lays out by."""

    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int


@dataclass(frozen=True)
class DeletionChart(PlotFrame):
    bars: tuple[Bar, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    total: int
    description: str


@dataclass(frozen=True)
class AgeRow:
    label: str  # dataset and rule
    y: float
    bar: Bar | None  # None: no rows, kept forever, or the store did not answer
    note: str  # "64 d of 90 d (71%)", "kept forever", "no rows"


@dataclass(frozen=True)
class AgeChart(PlotFrame):
    limit_x: float  # the 100% line
    rows: tuple[AgeRow, ...]
    x_ticks: tuple[Tick, ...]
    description: str


def nice_ceiling(value: float) -> float:
    """The next 1, 2 or 5 times a power of ten at or above `value` (an axis' top); 1 for nothing."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return float(next(step * power for step in (1, 2, 5, 10) if step * power >= value))


def deletion_chart(report: MonthlyReport) -> DeletionChart:
    days = report.day_totals
    height = 260
    top, bottom = TOP, height - BOTTOM
    left, right = LEFT, WIDTH - RIGHT
    ceiling = nice_ceiling(max((d.rows for d in days), default=0))
    slot = (right - left) / max(len(days), 1)
    bars = []
    for i, d in enumerate(days):
        h = (bottom - top) * d.rows / ceiling
        bars.append(Bar(round(left + i * slot + slot * 0.15, 2), round(bottom - h, 2),
                        round(slot * 0.7, 2), round(h, 2),
                        f"{d.day.isoformat()}: {d.rows:,} rows"))
    x_ticks = tuple(Tick(round(left + i * slot + slot / 2, 2), str(d.day.day))
                    for i, d in enumerate(days) if i % 5 == 0 or i == len(days) - 1)
    y_ticks = tuple(Tick(round(bottom - (bottom - top) * k / 4, 2), f"{ceiling * k / 4:,.0f}")
                    for k in range(5))
    total = sum(d.rows for d in days)
    busiest = max(days, key=lambda d: d.rows, default=None)
    if total and busiest is not None:
        active = sum(1 for d in days if d.rows)
        description = (f"{total:,} rows handled on {active} of {len(days)} days in "
                       f"{report.month}; the busiest day was {busiest.day.isoformat()} "
                       f"with {busiest.rows:,} rows.")
    else:
        description = f"No rows were deleted or otherwise handled in {report.month}."
    return DeletionChart(WIDTH, height, left, right, top, bottom, tuple(bars), x_ticks,
                         y_ticks, total, description)


def _rule_label(dataset: str, rule: int | None) -> str:
    return f"{dataset} ({'purge' if rule is None else f'rule {rule}'})"


def _age_label(line: AgeLine) -> str:
    return _rule_label(line.dataset, line.rule)


def _row_frame(rows: int, room: int) -> tuple[int, int, int, int, int]:
    """(top, height, left, right, bottom) of a chart with a row per rule and `room`
    pixels right of the plot for each row's note."""
    height = TOP + AGE_ROW * max(rows, 1) + BOTTOM
    return TOP, height, AGE_LEFT, WIDTH - RIGHT - room, height - BOTTOM


def _age_note(line: AgeLine) -> str:
    if line.error:
        return "not measured"
    if line.limit_days is None:
        return "kept forever"
    if line.age_days is None:
        return f"no rows (limit {line.limit})"
    percent = 100 * (line.ratio or 0.0)
    return f"{line.age_days:,.0f} d of {line.limit} ({percent:,.0f}%)"


def _age_sentence(line: AgeLine) -> str:
    if line.ratio is None or line.age_days is None:
        return f"{_age_label(line)}: {_age_note(line)}"
    return (f"{_age_label(line)}: oldest row {line.age_days:,.0f} days old, limit "
            f"{line.limit} ({line.ratio:.0%} of the limit)")


def age_chart(report: MonthlyReport) -> AgeChart:
    lines = report.ages
    top, height, left, right, bottom = _row_frame(len(lines), 180)
    scale = (right - left) / AGE_CAP
    rows = []
    for i, line in enumerate(lines):
        y = top + i * AGE_ROW
        bar = None
        if line.ratio is not None:
            width = min(line.ratio, AGE_CAP) * scale
            bar = Bar(left, y + 5, round(max(width, 1.0), 2), AGE_ROW - 10,
                      _age_sentence(line), line.over_limit)
        rows.append(AgeRow(_age_label(line), y + AGE_ROW / 2, bar, _age_note(line)))
    ticks = tuple(Tick(round(left + f * scale, 2), f"{f:.0%}") for f in (0, 0.5, 1, 1.5, 2))
    over = [line for line in lines if line.over_limit]
    if not lines:
        description = "No dataset with a time-based retention rule was measured."
    elif over:
        description = (f"{len(over)} of {len(lines)} rules have rows older than their "
                       "limit plus the lag allowed: " + "; ".join(_age_sentence(x) for x in over)
                       + ".")
    else:
        description = (f"All {len(lines)} measured rules keep their oldest row within "
                       "the limit.")
    return AgeChart(WIDTH, height, left, right, top, bottom, round(left + scale, 2),
                    tuple(rows), ticks, description)


@dataclass(frozen=True)
class LagRow:
    label: str  # dataset and rule
    y: float
    bar: Bar  # the longest lag
    median_x: float  # where the median falls on the same axis
    note: str  # "median 2.0 h, longest 26.0 h, 30 runs"


@dataclass(frozen=True)
class LagChart(PlotFrame):
    rows: tuple[LagRow, ...]
    x_ticks: tuple[Tick, ...]
    unit: str  # hours or days, whichever reads better for the longest lag
    description: str


def _lag_note(line: LagLine) -> str:
    return (f"median {line.median_hours:,.1f} h, longest {line.max_hours:,.1f} h, "
            f"{line.runs} run{'' if line.runs == 1 else 's'}")


def lag_chart(report: MonthlyReport) -> LagChart:
    """Each rule's longest deletion lag as a bar, its median as a mark on the bar."""
    lines = report.lags
    top, height, left, right, bottom = _row_frame(len(lines), 220)
    longest = max((line.max_hours for line in lines), default=0.0)
    unit, per = ("days", 24.0) if longest > 72 else ("hours", 1.0)
    span = max(longest / per, 1.0)
    scale = (right - left) / span
    rows = []
    for i, line in enumerate(lines):
        y = top + i * AGE_ROW
        label = _rule_label(line.dataset, line.rule)
        bar = Bar(left, y + 5, round(max(line.max_hours / per * scale, 1.0), 2),
                  AGE_ROW - 10, f"{label}: {_lag_note(line)}")
        rows.append(LagRow(label, y + AGE_ROW / 2, bar,
                           round(left + line.median_hours / per * scale, 2), _lag_note(line)))
    ticks = tuple(Tick(round(left + f * (right - left), 2), f"{f * span:,.1f}")
                  for f in (0, 0.25, 0.5, 0.75, 1))
    worst = max(lines, key=lambda line: line.max_hours, default=None)
    description = ("No run of the month found due rows." if worst is None else
                   f"Deletion lag of {len(lines)} rules over the month's runs; the longest: "
                   f"{worst.dataset}: {worst.max_hours:,.1f} h.")
    return LagChart(WIDTH, height, left, right, top, bottom, tuple(rows), ticks, unit,
                    description)
