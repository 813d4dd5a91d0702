"""`lethe demo`: build a realistic database and policy, then check, plan, run, plan again.

The demo is the product's first impression and its smoke test: it exercises the
same library calls a user's own policy would, on an embedded SQLite store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from lethe.clock import Clock
from lethe.demo.dataset import build_demo_database
from lethe.demo.files import build_demo_files
from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.governance.check import check
from lethe.policy.load import load_policy
from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.requests.service import open_request, run_request
from lethe.runtime import Runtime
from lethe.text import counted

Say = Callable[[str], None] | None

DEMO_POLICY = "policy.yaml"
DEMO_EXPORT_USERS = 60  # users with "download my data" exports in the object store


def demo_policy_text() -> str:
    return resources.files("lethe.demo").joinpath(DEMO_POLICY).read_text(encoding="utf-8")


def create_demo(directory: Path, now: datetime, *, policy_name: str = "lethe.yaml",
                scale: float = 1.0) -> list[Path]:
    """Write the demo policy and database into `directory` (state is started afresh)."""
    directory.mkdir(parents=True, exist_ok=True)
    policy_path = directory / policy_name
    policy_path.write_text(demo_policy_text(), encoding="utf-8")
    for stale in directory.glob("state.db*"):
        stale.unlink()
    database = directory / "app.db"
    build_demo_database(database, now, scale=scale)
    with sqlite3.connect(database) as conn:  # the erasure demo's user is among them
        users = [row[0] for row in conn.execute(
            "SELECT id FROM users WHERE deleted_at IS NULL ORDER BY closed_at IS NOT NULL, id "
            "LIMIT ?", (DEMO_EXPORT_USERS,))]
    build_demo_files(directory / "files", now, users)
    return [policy_path, database, directory / "files"]


def run_demo(directory: Path, clock: Clock, *, say: Say = None,
             scale: float = 1.0) -> dict[str, Any]:
    def tell(text: str) -> None:
        if say is not None:
            say(text)

    now = clock.now()
    policy_path, database, files = create_demo(directory, now, scale=scale)
    tell(f"[bold]lethe demo[/bold]: built {database} with three years of synthetic data, "
         f"data exports in {files}, and the policy {policy_path}")
    rt = Runtime.open(load_policy(policy_path), clock)
    try:
        report = check(rt.catalog, rt.audit, rt.clock.now(), rt.control)
        tell(f"1. check: {len(report.findings)} findings "
             f"({'ok' if report.ok else 'problems found'})")
        before = build_plan(rt)
        due = sum(a.rows for a in before.actions)
        tell(f"2. plan: {due} rows due across {len({a.step.dataset for a in before.actions})} "
             "datasets")
        for action in before.actions:
            if action.rows or action.blocked:
                rule = "" if action.step.rule is None else f" rule {action.step.rule}"
                kept = f" (kept: {action.blocked} referenced by retained rows)" \
                    if action.blocked else ""
                tell(f"   {action.step.dataset}{rule}: {action.step.action} {action.rows}{kept}")
        result = execute(rt, before)
        done = sum(a.done for a in result.actions)
        verified = all(a.verified for a in result.actions)
        tell(f"3. run {result.run}: {done} rows handled, verification "
             f"{'passed' if verified else 'FAILED'}")
        after = build_plan(rt)
        left = sum(a.rows for a in after.actions)
        tell(f"4. plan again: {left} rows due (expected 0)")
        erasure = demo_erasure(rt, database, directory / "requests", tell)
        chain = rt.audit.verify()
        tell(f"6. audit verify: {counted(chain.entries, 'entry', 'entries')}, "
             f"{counted(chain.checkpoints, 'signed checkpoint')}, "
             f"{'intact' if chain.ok else 'BROKEN'}")
    finally:
        rt.close()
    return {"directory": str(directory), "check": report.as_dict(), "plan": before.as_dict(),
            "run": result.as_dict(), "after": after.as_dict(), "erasure": erasure,
            "audit": chain.as_dict(),
            "ok": verified and left == 0 and chain.ok and erasure["status"] == "completed"}


def demo_erasure(rt: Runtime, database: Path, out: Path,
                 tell: Callable[[str], None]) -> dict[str, Any]:
    """An erasure request for one active user: soft-deleted now, erased after the window."""
    with sqlite3.connect(database) as conn:
        (user_id,) = conn.execute("SELECT id FROM users WHERE closed_at IS NULL "
                                  "ORDER BY id LIMIT 1").fetchone()
    record = open_request(rt, "erasure", "user", [f"id={user_id}"])
    first = run_request(rt, record.id, out)
    tell(f"5. erasure request {record.id}: {first.record.note}")
    window = rt.policy.datasets["users"].soft_delete
    later = rt.clock.now() + timedelta(days=(window.recover_for.amount or 0) + 1
                                       if window and window.recover_for.unit == "d" else 31)
    after_window = Runtime.open(rt.policy, Clock(later))
    try:
        done = run_request(after_window, record.id, out)
    finally:
        after_window.close()
    assert done.certificate is not None
    verdict = verify_certificate(load_certificate(done.certificate))
    erased = sum(d["erased"] for d in done.as_dict()["datasets"].values())
    retained = sum(d["retained"] for d in done.as_dict()["datasets"].values())
    tell(f"   {later.date()}: {done.record.status}; {erased} rows erased, {retained} retained "
         f"with their legal basis; certificate {done.certificate} "
         f"({'signature valid' if verdict.ok else 'INVALID'})")
    return {**done.as_dict(), "certificate_ok": verdict.ok}
