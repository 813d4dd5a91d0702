"""PII the subject points to (issue 18, item 6): customer.address_id -> address, as a
rental business's sample database has it. `referenced_by` on the address dataset makes
the rows a subject's rows point at the subject's: access exports them, erasure deletes
them when nothing else references them and anonymizes them otherwise, holds keep them,
and a run stopped after the customer row went still finds them. `check` does not advise
making customers children of their address."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lethe.governance.check import check
from lethe.holds import parse_scope, place_hold, release_hold
from lethe.requests.certificate import load_certificate, verify_certificate
from lethe.requests.service import open_request, run_request
from lethe.stores.sql import normalize_url
from tests.fixtures import NOW, runtime

# customer -> address: 1 has its own; 2 and 3 share one; 4's is also a store's
CUSTOMERS = {1: 1, 2: 2, 3: 2, 4: 3}
STREETS = {1: "1 Elm St", 2: "2 Oak St", 3: "3 Pine St", 4: "4 Lookup Rd"}


def _build(url: str) -> sa.Engine:
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE address (address_id integer PRIMARY KEY, "
                             "street varchar(200) NOT NULL, phone varchar(40), "
                             "last_update timestamp)"))
        conn.execute(sa.text(
            "CREATE TABLE customer (customer_id integer PRIMARY KEY, email varchar(200) "
            "NOT NULL, address_id integer NOT NULL REFERENCES address (address_id))"))
        conn.execute(sa.text(
            "CREATE TABLE store (store_id integer PRIMARY KEY, address_id integer NOT NULL "
            "REFERENCES address (address_id))"))
        conn.execute(sa.text(
            "CREATE TABLE rental (rental_id integer PRIMARY KEY, customer_id integer NOT NULL "
            "REFERENCES customer (customer_id))"))
        conn.execute(sa.text("INSERT INTO address (address_id, street, phone) "
                             "VALUES (:id, :street, :phone)"),
                     [{"id": i, "street": s, "phone": f"555-010{i}"} for i, s in STREETS.items()])
        conn.execute(sa.text("INSERT INTO customer VALUES (:id, :email, :address)"),
                     [{"id": c, "email": f"c{c}@example.com", "address": a}
                      for c, a in CUSTOMERS.items()])
        conn.execute(sa.text("INSERT INTO store VALUES (1, 3)"))
        conn.execute(sa.text("INSERT INTO rental VALUES (:id, :c)"),
                     [{"id": 10 * c + k, "c": c} for c in CUSTOMERS for k in range(2)])
    return engine


def _lock_addresses(engine: sa.Engine) -> None:
    """The store refuses to delete addresses (SQLite), until the trigger is dropped."""
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TRIGGER no_delete BEFORE DELETE ON address "
                             "BEGIN SELECT RAISE(ABORT, 'address rows are locked'); END"))


def _policy(tmp_path: Path, url: str, **address: Any) -> Path:
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Rentals", "control": f"sqlite:///{tmp_path / 'state.db'}",
        "stores": {"app": {"url": url}},
        "subjects": {"customer": {"dataset": "customer", "identities": ["email"]}},
        "datasets": {
            "customer": {"store": "app", "table": "customer", "class": "pii",
                         "fields": {"email": {"class": "pii", "anonymize": "mask-email"}}},
            "rental": {"store": "app", "table": "rental", "class": "operational",
                       "belongs_to": {"customer": "customer_id"}},
            "store": {"store": "app", "table": "store", "class": "operational"},
            "address": {"store": "app", "table": "address", "class": "pii",
                        "referenced_by": {"customer": "address_id"},
                        "fields": {"street": {"class": "pii", "anonymize": "redact"},
                                   "phone": {"class": "pii", "anonymize": None}},
                        **address}}}))
    return path


def _addresses(engine: sa.Engine) -> dict[int, tuple[str, str | None]]:
    with engine.connect() as conn:
        return {row[0]: (row[1], row[2]) for row in conn.execute(
            sa.text("SELECT address_id, street, phone FROM address"))}


def _erase(tmp_path: Path, url: str, customer: int, **address: Any) -> Any:
    rt = runtime(_policy(tmp_path, url, **address), NOW)
    try:
        record = open_request(rt, "erasure", "customer", [f"email=c{customer}@example.com"])
        return run_request(rt, record.id, tmp_path / "out")
    finally:
        rt.close()


def _certified(outcome: Any, dataset: str) -> dict[str, Any]:
    assert outcome.certificate is not None
    document = load_certificate(outcome.certificate)
    assert verify_certificate(document).ok
    [entry] = [d for d in document["certificate"]["datasets"] if d["dataset"] == dataset]
    return dict(entry)


def test_access_exports_the_address_the_subject_points_at(app_url: str,
                                                          tmp_path: Path) -> None:
    _build(app_url)
    rt = runtime(_policy(tmp_path, app_url), NOW)
    record = open_request(rt, "access", "customer", ["email=c2@example.com"])
    outcome = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert outcome.export is not None
    with zipfile.ZipFile(outcome.export) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        addresses = json.loads(archive.read("address.json"))
    assert manifest["datasets"]["address"] == 1
    assert [a["street"] for a in addresses] == [STREETS[2]]  # not 3's nor the store's


def test_erasure_deletes_an_address_nothing_else_references(app_url: str,
                                                           tmp_path: Path) -> None:
    engine = _build(app_url)
    outcome = _erase(tmp_path, app_url, 1)
    assert outcome.record.status == "completed"
    assert 1 not in _addresses(engine)
    assert _addresses(engine)[2] == (STREETS[2], "555-0102")
    entry = _certified(outcome, "address")
    assert (entry["rows"], entry["erased"], entry["retained"], entry["held"]) == (1, 1, 0, 0)


@pytest.mark.parametrize(("customer", "address", "key"), [
    (2, 2, "customer.address_id"),  # customer 3 still lives there
    (4, 3, "store.address_id")])  # a store's address too
def test_erasure_anonymizes_an_address_something_else_references(
        app_url: str, tmp_path: Path, customer: int, address: int, key: str) -> None:
    engine = _build(app_url)
    outcome = _erase(tmp_path, app_url, customer)
    assert outcome.record.status == "completed"
    assert _addresses(engine)[address] == ("[redacted]", None)
    entry = _certified(outcome, "address")
    assert (entry["rows"], entry["erased"], entry["retained"]) == (1, 0, 1)
    assert key in entry["legal_basis"] and "personal fields anonymized" in entry["legal_basis"]
    with engine.connect() as conn:
        left = set(conn.execute(sa.text("SELECT customer_id FROM customer")).scalars())
    assert left == set(CUSTOMERS) - {customer}


def test_a_held_subject_keeps_its_address(app_url: str, tmp_path: Path) -> None:
    engine = _build(app_url)
    rt = runtime(_policy(tmp_path, app_url), NOW)
    record = open_request(rt, "erasure", "customer", ["email=c1@example.com"])
    _held_then_released(rt, engine, record.id, tmp_path)


def _held_then_released(rt: Any, engine: sa.Engine, request: int, tmp_path: Path) -> None:
    """Customer 1 put under a hold: the run keeps the address and says held; after the
    release the next run completes and the address is gone. Closes `rt`."""
    hold = place_hold(rt.control, rt.audit, rt.clock,
                      parse_scope(rt.policy, "customer:c1@example.com", None, None), "case")
    held = run_request(rt, request, tmp_path / "out")
    assert held.record.status == "in_progress" and f"hold {hold}" in (held.record.note or "")
    assert held.as_dict()["datasets"]["address"]["held"] == 1
    assert _addresses(engine)[1] == (STREETS[1], "555-0101")
    release_hold(rt.control, rt.audit, rt.clock, hold, "case closed")
    done = run_request(rt, request, tmp_path / "out")
    rt.close()
    assert done.record.status == "completed" and 1 not in _addresses(engine)


def test_an_erasure_stopped_after_the_customer_went_still_erases_the_address(
        sqlite_url: str, tmp_path: Path) -> None:
    """The address's key is kept with the baselines before anything goes: when the store
    refuses the address's deletion after the customer row is gone, the rerun (nothing
    points at the address any more) still finds it."""
    engine = _build(sqlite_url)
    _lock_addresses(engine)
    rt = runtime(_policy(tmp_path, sqlite_url), NOW)
    record = open_request(rt, "erasure", "customer", ["email=c1@example.com"])
    stopped = run_request(rt, record.id, tmp_path / "out")
    assert stopped.record.status == "in_progress" and stopped.error is not None
    assert "stopped at address" in (stopped.record.note or "")
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM customer WHERE customer_id = 1")
                            ).scalar_one() == 0
        conn.execute(sa.text("DROP TRIGGER no_delete"))
    done = run_request(rt, record.id, tmp_path / "out")
    rt.close()
    assert done.record.status == "completed"
    assert 1 not in _addresses(engine)
    entry = _certified(done, "address")
    assert (entry["rows"], entry["erased"]) == (1, 1)


def _warnings(tmp_path: Path, url: str, **address: Any) -> list[str]:
    rt = runtime(_policy(tmp_path, url, **address), NOW)
    try:
        return [f.message for f in check(rt.catalog, now=NOW).findings
                if f.code == "blocking-reference" and f.path == "datasets.address"]
    finally:
        rt.close()


def test_check_points_the_other_way_for_a_subjects_lookup_row(app_url: str,
                                                             tmp_path: Path) -> None:
    """Without `referenced_by`, and with a rule deleting addresses, the warning about
    customer.address_id advises `referenced_by`, never `belongs_to` (whose cascade would
    delete customers when an address goes); with it, that reference is known and not
    warned about. An address table with no rule that nothing deletes from gets no
    warning at all: nothing is blocked."""
    _build(app_url)
    rule = {"retention": [{"keep": "10y", "after": "last_update"}]}
    warned = _warnings(tmp_path, app_url, referenced_by={}, **rule)
    [customer] = [m for m in warned if "customer.address_id" in m]
    assert "referenced_by: {customer: address_id}" in customer and "belongs_to" not in customer
    [store] = [m for m in warned if "store.address_id" in m]
    assert "belongs_to" in store  # a store is nobody's: cascading from it is the advice
    declared = _warnings(tmp_path, app_url, **rule)
    assert [m for m in declared if "customer.address_id" in m] == []
    assert [m for m in declared if "store.address_id" in m] == [store]
    assert _warnings(tmp_path, app_url, referenced_by={}) == []


def test_a_hold_placed_after_the_customer_went_still_keeps_its_address(
        sqlite_url: str, tmp_path: Path) -> None:
    """Nothing points at the address once the customer row is gone, so a hold on the
    customer cannot reach it there: the address is kept because the hold names the
    subject whose erasure pinned it, and counted as held, until the hold is released."""
    engine = _build(sqlite_url)
    _lock_addresses(engine)
    rt = runtime(_policy(tmp_path, sqlite_url), NOW)
    record = open_request(rt, "erasure", "customer", ["email=c1@example.com"])
    assert run_request(rt, record.id, tmp_path / "out").error is not None
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER no_delete"))
    _held_then_released(rt, engine, record.id, tmp_path)


def test_the_trust_page_says_what_erasure_does_to_the_address(tmp_path: Path) -> None:
    from lethe.policy.load import load_policy
    from lethe.reports.trust import trust_pages

    pages = trust_pages(load_policy(_policy(tmp_path, f"sqlite:///{tmp_path / 'a.db'}")), NOW)
    said = {row.data: row.outcome for row in pages.erasure}
    assert said["Address"].startswith(  # not plainly "Deleted"
        "Deleted when nothing else refers to it; while other records still refer to it, it "
        "is kept with its personal fields anonymised (")
