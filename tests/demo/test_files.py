"""The demo's object store: exports dated over 90 days, due after 30, erased with
their user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from lethe.clock import Clock
from lethe.demo.files import build_demo_files
from lethe.demo.scenario import run_demo

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_exports_span_ninety_days_and_the_first_user_has_a_fresh_one(tmp_path: Path) -> None:
    written = build_demo_files(tmp_path / "files", NOW, [5, 6, 7, 8])
    files = sorted((tmp_path / "files").rglob("*.json"))
    assert written == len(files) >= 4
    ages = [(NOW - datetime.fromtimestamp(f.stat().st_mtime, UTC)) for f in files]
    assert all(timedelta(0) <= age <= timedelta(days=90) for age in ages)
    fresh = [f for f in (tmp_path / "files" / "exports" / "5").iterdir()
             if NOW - datetime.fromtimestamp(f.stat().st_mtime, UTC) < timedelta(days=3)]
    assert fresh
    assert build_demo_files(tmp_path / "files", NOW, [9]) == len(list(
        (tmp_path / "files").rglob("*.json")))  # rebuilt from scratch


def test_demo_enforces_export_retention_and_erases_the_users_exports(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", Clock(NOW), scale=0.05)
    assert result["ok"] is True
    planned = [a for a in result["plan"]["actions"]
               if a["dataset"] == "data_exports" and a["action"] == "delete"]
    assert planned and planned[0]["rows"] > 0
    ran = [a for a in result["run"]["actions"]
           if a["dataset"] == "data_exports" and a["action"] == "delete"]
    assert ran[0]["done"] == planned[0]["rows"] and ran[0]["verified"] is True
    left = [NOW - datetime.fromtimestamp(f.stat().st_mtime, UTC)
            for f in (tmp_path / "demo" / "files").rglob("*.json")]
    assert left and all(age <= timedelta(days=30) for age in left)
    assert result["erasure"]["datasets"]["data_exports"]["erased"] >= 1


def test_the_demos_report_shows_no_breach_after_its_clean_run(tmp_path: Path) -> None:
    """Issue 19: right after the demo's clean, verified run, its monthly report reds
    nothing: accounts that retained invoices reference are kept for that reason, rows at
    their limit and rows newer than the run are within the lag its schedules allow."""
    from lethe.policy.load import load_policy
    from lethe.reports.monthly import build_report
    from lethe.runtime import Runtime

    result = run_demo(tmp_path / "demo", Clock(NOW), scale=0.05)
    assert result["ok"] is True
    rt = Runtime.open(load_policy(tmp_path / "demo" / "lethe.yaml"),
                      Clock(NOW + timedelta(hours=2)))
    try:
        report = build_report(rt, "2026-06")
    finally:
        rt.close()
    assert report.summary.datasets_over_limit == 0, [a for a in report.ages if a.over_limit]
    # what the old reading (older than the limit, whatever keeps it) would have reddened
    assert [a.dataset for a in report.ages if (a.ratio or 0) > 1 or a.kept]
