"""Composite primary keys (issue 18, item 7): a partitioned payment table's key is
(payment_date, payment_id), as PostgreSQL requires, and payment ids repeat across
partitions. Batches walk the pair as a row value, anonymization and deletion address a
row by the whole key, and `check` has nothing to warn about."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.errors import LetheError, SchemaMismatch
from lethe.governance.check import check
from lethe.policy.load import load_policy
from lethe.stores.sql import normalize_url
from tests.fixtures import NOW, days_ago, runtime

# (payment_date days ago, payment_id, note): ids repeat across months (and partitions)
PAYMENTS = [(400, 1, "card 4242"), (400, 2, "card 1881"), (395, 3, "cash"),
            (20, 1, "card 4242"), (20, 2, "card 0005"), (15, 3, "cash"), (10, 1, "card 9999")]


def _build(url: str, partitioned: bool) -> sa.Engine:
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        if partitioned:
            conn.execute(sa.text(
                "CREATE TABLE payment (payment_date timestamp NOT NULL, payment_id integer "
                "NOT NULL, note varchar(40), PRIMARY KEY (payment_date, payment_id)) "
                "PARTITION BY RANGE (payment_date)"))
            for name, low, high in [("old", "2020-01-01", "2026-01-01"),
                                    ("new", "2026-01-01", "2027-01-01")]:
                conn.execute(sa.text(f"CREATE TABLE payment_{name} PARTITION OF payment "
                                     f"FOR VALUES FROM ('{low}') TO ('{high}')"))
        else:
            conn.execute(sa.text(
                "CREATE TABLE payment (payment_date timestamp NOT NULL, payment_id integer "
                "NOT NULL, note varchar(40), PRIMARY KEY (payment_date, payment_id))"))
        conn.execute(sa.text("INSERT INTO payment VALUES (:d, :i, :n)"),
                     [{"d": days_ago(age).replace(tzinfo=None), "i": i, "n": n}
                      for age, i, n in PAYMENTS])
    return engine


def _policy(tmp_path: Path, url: str, **payment: Any) -> Path:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Rentals", "control": f"sqlite:///{tmp_path / 'state.db'}",
        "stores": {"app": {"url": url}},
        "datasets": {"payment": {
            "store": "app", "table": "payment", "class": "operational",
            "fields": {"note": {"class": "pii", "anonymize": "redact"}},
            "retention": [{"when": {"note": "cash"}, "keep": "365d", "after": "payment_date"},
                          {"keep": "16d", "after": "payment_date", "action": "anonymize"}],
            **payment}}}))
    return path


def _payments(engine: sa.Engine) -> dict[tuple[int, int], str]:
    """(whole days old, payment_id) -> note."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT payment_date, payment_id, note FROM payment"))
        return {((NOW.replace(tzinfo=None) - (d if isinstance(d, datetime)  # SQLite: text
                                              else datetime.fromisoformat(d))).days, i): n
                for d, i, n in rows}


@pytest.mark.parametrize("key", [None, ["payment_date", "payment_id"],
                                 ["payment_id", "payment_date"]])
def test_a_composite_key_walks_and_addresses_whole_rows(app_url: str, tmp_path: Path,
                                                       key: list[str] | None) -> None:
    partitioned = app_url.startswith("postgresql")
    engine = _build(app_url, partitioned)
    policy = _policy(tmp_path, app_url, **({} if key is None else {"key": key}))
    rt = runtime(policy, NOW)
    try:
        assert [f for f in check(rt.catalog, now=NOW).findings
                if f.code in ("non-unique-key", "missing-table", "missing-column")] == []
        plan = build_plan(rt)
        assert [(a.step.action, a.rows) for a in plan.actions] == [("delete", 1),
                                                                   ("anonymize", 4)]
        result = execute(rt, plan, batch_size=1)  # one row a batch: the walk resumes
        assert result.ok, result.as_dict()
        assert [a.batches >= a.done for a in result.actions] == [True, True]
    finally:
        rt.close()
    # the old cash payment 3 went, not the fresh payment 3; payments 1 and 2 older than
    # 16 days were anonymized, not the fresh payment 1
    assert _payments(engine) == {(400, 1): "[redacted]", (400, 2): "[redacted]",
                                 (20, 1): "[redacted]", (20, 2): "[redacted]",
                                 (15, 3): "cash", (10, 1): "card 9999"}


def test_a_dataset_others_link_to_needs_a_single_column_key(sqlite_url: str,
                                                           tmp_path: Path) -> None:
    _build(sqlite_url, partitioned=False)
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Rentals", "control": f"sqlite:///{tmp_path / 'state.db'}",
        "stores": {"app": {"url": sqlite_url}},
        "subjects": {"payer": {"dataset": "payment", "identities": ["note"]}},
        "datasets": {"payment": {"store": "app", "table": "payment", "class": "pii"}}}))
    rt = runtime(path, NOW)
    try:
        with pytest.raises(SchemaMismatch, match=r"composite key .*a subject's dataset"):
            build_plan(rt)
        findings = check(rt.catalog, now=NOW).findings
    finally:
        rt.close()
    assert any(f.severity == "error" and "set `key:`" in f.message for f in findings)


@pytest.mark.parametrize("key", [["payment_id"], ["payment_id", "payment_id"]])
def test_a_composite_key_names_two_different_columns(tmp_path: Path, key: list[str]) -> None:
    with pytest.raises(LetheError, match="two or more different columns"):
        load_policy(_policy(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", key=key))
