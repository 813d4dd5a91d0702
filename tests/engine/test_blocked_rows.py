"""Rows a foreign key keeps (issue 18, item 2): a RESTRICT reference from rows the policy
retains blocks the rows it points at, never the batch. The plan names the constraint, the
run deletes every other row and verifies, and the run record, its audit entry, the
monthly report and an erasure certificate say how many rows stayed and which key kept
them. On SQLite as on PostgreSQL: lethe's connections enforce foreign keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.reports.monthly import BlockedRows, build_report
from lethe.reports.render import render_html, render_markdown
from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.requests.service import open_request, run_request
from lethe.stores.sql import normalize_url
from tests.fixtures import NOW, days_ago, runtime

ORDERED = {2, 5}  # accounts that orders (kept 7 years) still reference
KEY = "orders_account_restrict (orders.account_id)"  # how lethe names the constraint


def _build(url: str) -> sa.Engine:
    """Six accounts closed long ago; orders of accounts 2 and 5 behind a named RESTRICT
    foreign key."""
    engine = sa.create_engine(normalize_url(url))
    closed = days_ago(400).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE accounts (id integer PRIMARY KEY, "
                             "email varchar(200) NOT NULL, closed_at timestamp)"))
        conn.execute(sa.text(
            "CREATE TABLE orders (id integer PRIMARY KEY, account_id integer NOT NULL, "
            "placed_at timestamp NOT NULL, CONSTRAINT orders_account_restrict FOREIGN KEY "
            "(account_id) REFERENCES accounts (id) ON DELETE RESTRICT)"))
        conn.execute(sa.text("INSERT INTO accounts VALUES (:id, :email, :closed)"),
                     [{"id": i, "email": f"a{i}@example.com", "closed": closed}
                      for i in range(1, 7)])
        conn.execute(sa.text("INSERT INTO orders VALUES (:id, :account, :placed)"),
                     [{"id": 10 + a, "account": a, "placed": closed} for a in ORDERED])
    return engine


def _policy(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Shop", "control": f"sqlite:///{tmp_path / 'state.db'}",
        "stores": {"app": {"url": url}},
        "subjects": {"account": {"dataset": "accounts", "identities": ["email"]}},
        "datasets": {
            "accounts": {"store": "app", "table": "accounts", "class": "pii",
                         "fields": {"email": {"class": "pii", "anonymize": "mask-email"}},
                         "retention": [{"keep": "30d", "after": "closed_at"}]},
            "orders": {"store": "app", "table": "orders", "class": "operational",
                       "legal_basis": "tax law",
                       "retention": [{"keep": "7y", "after": "placed_at"}]}}}))
    return path


def _accounts(engine: sa.Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT id FROM accounts")).scalars())


def test_a_restrict_reference_blocks_its_rows_and_every_record_names_it(
        app_url: str, tmp_path: Path) -> None:
    engine = _build(app_url)
    policy = _policy(tmp_path, app_url)
    shown = subprocess.run(
        [sys.executable, "-c", "from lethe.cli.app import main; main()", "plan",
         "--policy", str(policy), "--now", NOW.isoformat()],
        capture_output=True, text=True, cwd=tmp_path, check=False)
    assert shown.returncode == 0, shown.stderr
    assert f"blocked: accounts[0] delete: 2 rows still referenced through {KEY}" \
        in " ".join(shown.stdout.split())
    rt = runtime(policy, NOW)
    try:
        plan = build_plan(rt)
        [accounts] = [a for a in plan.actions if a.step.dataset == "accounts"]
        assert (accounts.rows, accounts.blocked, accounts.blocked_by) == (4, 2, ((KEY, 2),))
        assert accounts.as_dict()["blocked_by"] == [{"foreign_key": KEY, "rows": 2}]
        result = execute(rt, plan, batch_size=2)
        [done] = [a for a in result.actions if a.planned.step.dataset == "accounts"]
        # every other row went, in batches no reference rolled back; what stayed is an
        # exception with its reason, not a failure
        assert (done.done, done.verified, done.error, done.remaining) == (4, True, None, 0)
        assert result.ok and _accounts(engine) == ORDERED
        assert done.as_dict()["blocked"] == 2
        record = rt.control.run(result.run)
        [recorded] = [a for a in record["actions"] if a["dataset"] == "accounts"]
        assert (recorded["blocked"], recorded["blocked_by"]) == (2, {KEY: 2})
        assert record["status"] == "completed"
        [entry] = [e for e in rt.audit.entries(target="dataset:accounts")
                   if e.action == "retention.delete"]
        details = json.loads(entry.details)
        assert (details["blocked"], details["blocked_by"]) == (2, {KEY: 2})
        report = build_report(rt, "2026-06")
        assert report.blocked == (BlockedRows("accounts", KEY, 2, 2),)
        assert report.summary.steps_failed == 0
        for text in (render_markdown(report), render_html(report)):
            assert "Rows kept by foreign keys" in text and "orders_account_restrict" in text
        # lethe's own connection to the store enforces the key (SQLite too)
        with rt.catalog.row_store("app").engine.connect() as conn, \
                pytest.raises(sa.exc.IntegrityError):
            conn.execute(sa.text("DELETE FROM accounts WHERE id = 2"))
    finally:
        rt.close()


def test_an_erased_subject_a_retained_row_references_is_certified_as_kept_by_the_key(
        app_url: str, tmp_path: Path) -> None:
    engine = _build(app_url)
    rt = runtime(_policy(tmp_path, app_url), NOW)
    try:
        record = open_request(rt, "erasure", "account", ["email=a5@example.com"])
        outcome = run_request(rt, record.id, tmp_path / "out")
    finally:
        rt.close()
    assert outcome.record.status == "completed" and outcome.certificate is not None
    document = load_certificate(outcome.certificate)
    assert verify_certificate(document).ok
    [account] = [d for d in document["certificate"]["datasets"] if d["dataset"] == "accounts"]
    assert (account["rows"], account["erased"], account["retained"]) == (1, 0, 1)
    assert account["legal_basis"] == ("referenced by rows the policy retains, through "
                                      f"{KEY}; personal fields anonymized")
    assert 5 in _accounts(engine)
    with engine.connect() as conn:
        email = conn.execute(sa.text("SELECT email FROM accounts WHERE id = 5")).scalar_one()
    assert email != "a5@example.com"
