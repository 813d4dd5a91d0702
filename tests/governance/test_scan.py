"""`lethe scan` finds PII columns from a bounded sample and compares them with `fields:`."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lethe.catalog import open_catalog
from lethe.cli.app import main
from lethe.governance.scan import scan
from lethe.policy.load import load_policy
from lethe.stores.sql import normalize_url
from tests.fixtures import build_app, write_policy

extra = sa.MetaData()
# Awkward names on purpose (mixed case, reserved words): they come from the live schema
# and must be quoted.
contacts = sa.Table(
    "Order", extra,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("full_name", sa.String(100)),
    sa.Column("user", sa.String(200)),  # a reserved word on PostgreSQL
    sa.Column("card", sa.String(40), nullable=False),
    sa.Column("iban", sa.String(40)),
    sa.Column("api_key", sa.Text),
    sa.Column("sealed", sa.Text),
    sa.Column("notes", sa.Text),
    sa.Column("amount", sa.Integer),
)
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus"]
CARDS = ["4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005", "6011111111111117"]


def sealed_value(i: int) -> str:
    """What lethe's field encryption stores: `lethe1:` + base64 (high entropy)."""
    return "lethe1:" + base64.b64encode(os.urandom(48) + bytes([i % 256])).decode()


def contact_rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "full_name": f"{FIRST[i % 8]} {LAST[(i * 3) % 8]}",
             "user": f"person{i}@example.net", "card": CARDS[i % 4],
             "iban": "DE89 3704 0044 0532 0130 00" if i % 2 else "GB82WEST12345698765432",
             "api_key": f"sk_live_{i:04d}abcdefghijKLMNOP", "sealed": sealed_value(i),
             "notes": "called back, all fine" if i % 5 else f"call +44 20 7946 {i:04d}",
             "amount": i} for i in range(1, n + 1)]


def build_contacts(url: str, n: int = 40) -> list[dict[str, Any]]:
    engine = sa.create_engine(normalize_url(url))
    extra.drop_all(engine)
    extra.create_all(engine)
    rows = contact_rows(n)
    with engine.begin() as conn:
        conn.execute(contacts.insert(), rows)
    engine.dispose()
    return rows


def run_scan(policy: Path, sample: int = 1000) -> Any:
    catalog = open_catalog(load_policy(policy))
    try:
        return scan(catalog, sample)
    finally:
        catalog.close()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out + out.err


def test_declared_columns_are_covered_and_a_clean_schema_passes(app_url: str,
                                                                tmp_path: Path) -> None:
    build_app(app_url)
    report = run_scan(write_policy(tmp_path, app_url))
    by_column = {(c.table, c.column): c for c in report.columns}
    assert report.ok and report.findings == []
    assert by_column[("users", "email")].detected == ("email",)
    assert by_column[("analytics", "ip")].detected == ("ip",)
    assert by_column[("profiles", "phone")].detected == ("phone",)  # 555-01xx under `phone`
    assert by_column[("events", "status")].detected == ()
    coverage = report.coverage
    assert (coverage["declared"], coverage["discovered"], coverage["covered"]) == (6, 4, 4)
    assert sorted(coverage["not_found"]) == ["app.profiles.bio", "app.users.display_name"]


def test_undeclared_pii_is_a_finding_with_suggestions_that_load(app_url: str,
                                                                tmp_path: Path) -> None:
    build_app(app_url)
    build_contacts(app_url)
    policy_path = write_policy(tmp_path, app_url)
    report = run_scan(policy_path)
    got = {c.column: c.detected for c in report.columns if c.table == "Order"}
    assert got == {"full_name": ("name",), "user": ("email",), "card": ("card",),
                   "iban": ("iban",), "api_key": ("token",), "sealed": (),
                   "notes": ("phone",)}
    assert not report.ok
    assert {c.column for c in report.undeclared} == {
        "full_name", "user", "card", "iban", "api_key", "notes"}
    sealed = next(c for c in report.columns if c.column == "sealed")
    assert sealed.status == "encrypted" and sealed.counts == {}
    suggested = report.suggestions["datasets"]["Order"]
    assert (suggested["store"], suggested["table"], suggested["class"]) == (
        "app", "Order", "pii")
    assert suggested["fields"]["user"] == {"class": "pii", "anonymize": "mask-email"}
    assert suggested["fields"]["card"]["anonymize"] == "redact"  # NOT NULL: not `null`
    # the suggestion is in the policy file's own format: merged in, it loads and scans clean
    policy = yaml.safe_load(policy_path.read_text(encoding="utf-8"))
    policy["datasets"].update(report.suggestions["datasets"])
    policy_path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    assert run_scan(policy_path).ok


def test_a_column_declared_with_another_class_is_reported(app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    policy = write_policy(tmp_path, app_url, datasets__analytics__fields__email={
        "class": "behavioral", "anonymize": "hash"})
    report = run_scan(policy)
    [finding] = report.findings
    assert (finding.code, finding.path) == ("undeclared-pii", "datasets.analytics.fields.email")
    assert report.suggestions == {"datasets": {"analytics": {"fields": {
        "email": {"class": "pii", "anonymize": "hash"}}}}}


def test_the_sample_is_bounded(app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    build_contacts(app_url, n=120)
    report = run_scan(write_policy(tmp_path, app_url), sample=25)
    assert {c.sampled for c in report.columns if c.table == "Order"} == {25}
    assert {c.sampled for c in report.columns if c.table == "analytics"} == {25}


def test_the_store_stays_writable_after_a_read_only_scan(app_url: str, tmp_path: Path) -> None:
    build_app(app_url)
    catalog = open_catalog(load_policy(write_policy(tmp_path, app_url)))
    try:
        scan(catalog, 10)
        store = catalog.row_store("app")
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(sa.text("UPDATE events SET status = 'processed' WHERE id = 1"))
    finally:
        catalog.close()


def test_cli_json_exit_code_and_no_sampled_values_in_output(
        app_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_app(app_url)
    rows = build_contacts(app_url)
    policy = str(write_policy(tmp_path, app_url))
    code, out = cli(capsys, "scan", "--policy", policy, "--json")
    assert code == 1
    data = json.loads(out)
    assert set(data) >= {"columns", "suggestions", "coverage"}
    column = next(c for c in data["columns"] if c["column"] == "card")
    assert column == {"store": "app", "dataset": None, "table": "Order",
                      "column": "card", "detected": ["card"], "share": {"card": 1.0},
                      "declared": None, "sampled": 40, "encrypted": False,
                      "status": "undeclared"}
    assert "app.Order.user" in data["coverage"]["undeclared"]
    code, text = cli(capsys, "scan", "--policy", policy)
    assert code == 1 and "undeclared" in text and "Suggested classifications" in text
    for output in (out, text):
        for row in rows:
            for key in ("full_name", "user", "card", "iban", "api_key", "sealed", "notes"):
                assert str(row[key]) not in output
        assert "example.com" not in output and "Lovelace" not in output


def test_cli_clean_schema_exits_zero_and_unknown_store_is_a_usage_error(
        sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_app(sqlite_url)
    policy = str(write_policy(tmp_path, sqlite_url))
    code, text = cli(capsys, "scan", "--policy", policy, "--sample", "5")
    assert code == 0 and "coverage: 4 of 4 discovered PII columns declared" in text
    code, text = cli(capsys, "scan", "--policy", policy, "--store", "nope")
    assert code == 2 and "unknown store 'nope'" in text and "Traceback" not in text


def test_postgres_inet_and_jsonb_columns_are_scanned(postgres_url: str, tmp_path: Path) -> None:
    build_app(postgres_url)
    engine = sa.create_engine(normalize_url(postgres_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE logins (id integer PRIMARY KEY, addr inet, "
                             "payload jsonb, attempts integer)"))
        conn.execute(sa.text("INSERT INTO logins SELECT g, ('198.51.100.' || g)::inet, "
                             "jsonb_build_object('contact', 'u' || g || '@example.org'), g "
                             "FROM generate_series(1, 30) g"))
    engine.dispose()
    report = run_scan(write_policy(tmp_path, postgres_url))
    got = {c.column: (c.detected, c.sampled) for c in report.columns if c.table == "logins"}
    assert got == {"addr": (("ip",), 30), "payload": (("email",), 30)}  # not `attempts`


def test_a_rental_schema_scans_as_a_privacy_engineer_reads_it(app_url: str,
                                                              tmp_path: Path) -> None:
    """Names in capitals are names, a staff password's SHA-1 is a credential (not a
    token), and the `name` of a category or a language is nobody's (issue 18, item 8)."""
    engine = sa.create_engine(normalize_url(app_url))
    firsts = ["MARY", "PATRICIA", "LINDA", "BARBARA", "ELIZABETH"]
    lasts = ["SMITH", "JOHNSON", "WILLIAMS", "JONES", "BROWN"]
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customer (customer_id integer PRIMARY KEY, "
                             "first_name varchar(45), last_name varchar(45))"))
        conn.execute(sa.text("CREATE TABLE staff (staff_id integer PRIMARY KEY, "
                             "username varchar(16), password varchar(40))"))
        conn.execute(sa.text("CREATE TABLE category (category_id integer PRIMARY KEY, "
                             "name varchar(25))"))
        conn.execute(sa.text("CREATE TABLE language (language_id integer PRIMARY KEY, "
                             "name varchar(20))"))
        conn.execute(sa.text("INSERT INTO customer VALUES (:i, :f, :l)"),
                     [{"i": i, "f": f, "l": lasts[i]} for i, f in enumerate(firsts)])
        conn.execute(sa.text("INSERT INTO staff VALUES (:i, :u, :p)"), [
            {"i": 1, "u": "Mike", "p": "8cb2237d0679ca88db6464eac60da96345513964"},
            {"i": 2, "u": "Jon", "p": "8cb2237d0679ca88db6464eac60da96345513964"}])
        conn.execute(sa.text("INSERT INTO category VALUES (:i, :n)"), [
            {"i": i, "n": n} for i, n in enumerate(
                ["Action", "Animation", "Children", "Classics", "Comedy", "Documentary",
                 "Drama", "Family", "Foreign", "Games", "Horror", "Music", "Sci-Fi"])])
        conn.execute(sa.text("INSERT INTO language VALUES (:i, :n)"), [
            {"i": i, "n": n} for i, n in enumerate(
                ["English", "Italian", "Japanese", "Mandarin", "French", "German"])])
    engine.dispose()
    policy = tmp_path / "lethe.yaml"
    policy.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Rentals", "control": f"sqlite:///{tmp_path / 'state.db'}",
        "stores": {"app": {"url": app_url}}, "datasets": {}}))
    report = run_scan(policy)
    detected = {(c.table, c.column): c.detected for c in report.columns if c.detected}
    assert detected == {("customer", "first_name"): ("name",),
                        ("customer", "last_name"): ("name",),
                        ("staff", "password"): ("credential",)}
    suggested = report.as_dict()["suggestions"]["datasets"]
    assert suggested["staff"]["fields"]["password"]["anonymize"] == "null"


def test_stored_password_hashes_of_every_common_library_are_credentials_not_tokens(
        app_url: str, tmp_path: Path) -> None:
    """Issue 23, item 4: passlib's `$scrypt$ln=…`, `$pbkdf2-sha256$` and
    `$bcrypt-sha256$`, Werkzeug's `scrypt:…$salt$hex`, argon2, bcrypt, Django's forms:
    protected credentials under any column name, never a leaked token."""
    hashes = [
        "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0$Rm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA",
        "$pbkdf2-sha256$29000$N2YuDYBwDqHUWmvNiVFq7Q$Fc8s5A6Hr3wYf0bK9ZlLhC0cVBqT6Z8u0vQyF1X",
        "$bcrypt-sha256$v=2,t=2b,r=12$n79VH.0Q2TMWmt3Oqt9uku$Kq4Noyk3094Y2QlB8NdRT8SvGiI4ft2",
        "scrypt:32768:8:1$rJ9qH0Q8yW6tQ2Fv$" + "ab" * 64,
        "pbkdf2:sha256:600000$Pq1Xz9mN$" + "0f" * 32,
        "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
        "$2b$12$KIXQJ5dMzvVb9Zg7yq0oE.2xq2Zlq6qzF3mZ5cG8n7u5o8m3jY1mS",
        "pbkdf2_sha256$600000$Hq1p3XrE$2bX8wq5m0Uo0Jc1Zk3h4f5A6B7C8D9E0F1G2H3I4J5K=",
    ]
    engine = sa.create_engine(normalize_url(app_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE accounts (id integer PRIMARY KEY, "
                             "login_secret varchar(300))"))
        conn.execute(sa.text("INSERT INTO accounts VALUES (:i, :h)"),
                     [{"i": i, "h": h} for i, h in enumerate(hashes * 5)])
    engine.dispose()
    policy = tmp_path / "lethe.yaml"
    policy.write_text(yaml.safe_dump({
        "lethe": 1, "organization": "Accounts", "stores": {"app": {"url": app_url}},
        "control": f"sqlite:///{tmp_path / 'state.db'}", "datasets": {}}))
    report = run_scan(policy)
    found = next(c for c in report.columns if c.column == "login_secret")
    assert found.detected == ("credential",) and found.sampled == len(hashes) * 5
