"""Real schemas (issue 18): a rental business's tables as a public sample database has
them, on PostgreSQL: payments range-partitioned by month with their foreign keys and
indexes declared on the partitions only."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from lethe.engine.execute import execute
from lethe.engine.plan import build_plan
from lethe.governance.check import check
from lethe.stores.sql import normalize_url
from tests.fixtures import NOW, runtime

pytestmark = pytest.mark.postgres

PAYERS = {2, 4}  # customers whose payments reference them


def _build(url: str, *, indexed: bool = True) -> sa.Engine:
    """Ten customers closed long ago; payments of customers 2 and 4 in two monthly
    partitions, each partition with its own foreign key (and index) on customer_id and
    none on the partitioned table."""
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customer (customer_id int PRIMARY KEY, "
                             "email text NOT NULL, closed_at timestamptz)"))
        conn.execute(sa.text(
            "CREATE TABLE payment (payment_id int NOT NULL, customer_id int NOT NULL, "
            "amount numeric NOT NULL, payment_date timestamptz NOT NULL) "
            "PARTITION BY RANGE (payment_date)"))
        for month in ("01", "02"):
            part = f"payment_p2026_{month}"
            conn.execute(sa.text(
                f"CREATE TABLE {part} PARTITION OF payment FOR VALUES FROM "
                f"('2026-{month}-01') TO ('2026-{int(month) + 1:02d}-01')"))
            conn.execute(sa.text(f"ALTER TABLE {part} ADD PRIMARY KEY (payment_id)"))
            conn.execute(sa.text(f"ALTER TABLE {part} ADD CONSTRAINT {part}_customer_fkey "
                                 "FOREIGN KEY (customer_id) REFERENCES customer (customer_id)"))
            if indexed:
                conn.execute(sa.text(f"CREATE INDEX ON {part} (customer_id)"))
        conn.execute(sa.text(
            "INSERT INTO customer SELECT g, 'c' || g || '@example.com', "
            "TIMESTAMPTZ '2025-01-01' FROM generate_series(1, 10) g"))
        conn.execute(sa.text(
            "INSERT INTO payment VALUES (1, 2, 5, '2026-01-10'), (2, 4, 7, '2026-01-20'), "
            "(3, 2, 9, '2026-02-03')"))
    return engine


def _policy(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Rentals", "control": "sqlite:///state.db",
        "stores": {"app": {"url": url}},
        "subjects": {"customer": {"dataset": "customer", "identities": ["email"]}},
        "datasets": {
            "customer": {"store": "app", "table": "customer", "key": "customer_id",
                         "class": "pii",
                         "fields": {"email": {"class": "pii", "anonymize": "mask-email"}},
                         "retention": [{"keep": "30d", "after": "closed_at"}]},
            "payment": {"store": "app", "table": "payment", "key": "payment_id",
                        "class": "operational", "belongs_to": {"customer": "customer_id"},
                        "erasure": "retain", "legal_basis": "tax records",
                        "retention": [{"keep": "7y", "after": "payment_date"}]}}}))
    return path


def _customers(engine: sa.Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT customer_id FROM customer")).scalars())


def test_foreign_keys_declared_on_partitions_block_their_rows_not_the_batch(
        postgres_url: str, tmp_path: Path) -> None:
    """The partitions' foreign keys are the table's: plan counts the referenced customers
    as blocked, run deletes every other one (no 23503 rolling back whole batches) and
    verifies, and the payments stay."""
    engine = _build(postgres_url)
    rt = runtime(_policy(tmp_path, postgres_url), NOW)
    info = rt.catalog.row_store("app").tables()
    assert "payment_p2026_01" not in info  # a partition is part of its table
    assert [(fk.columns, fk.table) for fk in info["payment"].foreign_keys] == [
        (("customer_id",), "customer")]  # declared twice, one reference
    plan = build_plan(rt)
    [customers] = [a for a in plan.actions if a.step.dataset == "customer"]
    assert (customers.rows, customers.held, customers.blocked) == (8, 0, len(PAYERS))
    result = execute(rt, plan, batch_size=3)
    rt.close()
    [done] = [a for a in result.actions if a.planned.step.dataset == "customer"]
    assert done.error is None and done.done == 8 and done.verified
    assert _customers(engine) == PAYERS
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM payment")).scalar_one() == 3


@pytest.mark.parametrize("indexed", [True, False])
def test_an_index_on_every_partition_indexes_the_link(postgres_url: str, tmp_path: Path,
                                                      indexed: bool) -> None:
    """`unindexed-link` looks at the partitions' indexes: one on every partition is an
    index of the link; none is reported."""
    _build(postgres_url, indexed=indexed)
    rt = runtime(_policy(tmp_path, postgres_url), NOW)
    findings = [f.code for f in check(rt.catalog, now=NOW).findings]
    rt.close()
    assert ("unindexed-link" in findings) is not indexed
