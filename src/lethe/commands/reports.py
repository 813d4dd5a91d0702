"""The monthly compliance report, built once for whichever edge renders it."""

from __future__ import annotations

from lethe.reports.monthly import MonthlyReport, build_report
from lethe.runtime import Runtime


def monthly_report(rt: Runtime, month: str) -> MonthlyReport:
    """Deletions, verification, holds and requests of `month` (YYYY-MM)."""
    return build_report(rt, month)


__all__ = ["MonthlyReport", "monthly_report"]
