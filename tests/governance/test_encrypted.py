"""`encrypted: true` on a field or a class (issue 23, item 1): `check` and `scan` count
the values that are not lethe field-encryption tokens (never show them), and the trust
pages say "encrypted at rest" for exactly the declared columns."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from lethe.clock import Clock
from lethe.errors import PolicyError
from lethe.governance.check import plaintext_fields
from lethe.governance.scan import scan
from lethe.policy.load import load_policy, parse_policy
from lethe.reports.evidence import encryption_evidence
from lethe.reports.trust import ENCRYPTED_AT_REST, trust_pages
from lethe.reports.trust_claims import unbacked
from lethe.runtime import Runtime
from lethe.stores.sql import normalize_url

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PLAIN = 12  # of 80 phone numbers, left in plaintext beside 68 tokens


def write(tmp_path: Path, url: str, *, field: dict[str, Any] | None = None,
          classes: dict[str, Any] | None = None) -> Path:
    policy: dict[str, Any] = {
        "lethe": 1, "organization": "Contacts Co", "control": f"sqlite:///{tmp_path / 's.db'}",
        "stores": {"app": {"url": url}},
        "datasets": {"contacts": {
            "store": "app", "table": "contacts", "class": "operational",
            "fields": {"phone": field or {"class": "pii", "encrypted": True},
                       "note": {"class": "operational"}},
            "retention": [{"keep": "1y", "after": "created_at"}]}}}
    if classes is not None:
        policy["classes"] = classes
    path = tmp_path / "lethe.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


@pytest.fixture
def contacts(app_url: str, tmp_path: Path) -> Path:
    """80 contacts: 68 phones sealed by lethe's field encryption, 12 in plaintext."""
    engine = sa.create_engine(normalize_url(app_url))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS contacts"))
        conn.execute(sa.text("CREATE TABLE contacts (id integer PRIMARY KEY, phone "
                             "varchar(400), note varchar(100), created_at timestamp)"))
    policy = write(tmp_path, app_url)
    rt = Runtime.open(load_policy(policy), Clock(NOW))
    cipher = rt.cipher()
    rows = [{"i": i, "p": f"+44 20 7946 {i:04d}" if i <= PLAIN else cipher.encrypt_field(
        "contact", i, f"+44 20 7946 {i:04d}", dataset="contacts", column="phone"),
             "n": f"note {i}", "t": NOW} for i in range(1, 81)]
    rt.close()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO contacts VALUES (:i, :p, :n, :t)"), rows)
    engine.dispose()
    return policy


def seal_the_plaintext(policy: Path, app_url: str) -> None:
    """Encrypt the fixture's 12 plaintext phones in place, as the application would."""
    rt = Runtime.open(load_policy(policy), Clock(NOW))
    cipher = rt.cipher()
    sealed = [{"i": i, "p": cipher.encrypt_field("contact", i, f"+44 20 7946 {i:04d}",
                                                 dataset="contacts", column="phone")}
              for i in range(1, PLAIN + 1)]
    rt.close()
    engine = sa.create_engine(normalize_url(app_url))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE contacts SET phone = :p WHERE id = :i"), sealed)
    engine.dispose()


def findings_of(policy: Path) -> list[Any]:
    rt = Runtime.open(load_policy(policy), Clock(NOW))
    try:
        return plaintext_fields(rt.catalog)
    finally:
        rt.close()


def test_check_counts_the_plaintext_values_of_an_encrypted_field(contacts: Path) -> None:
    found = findings_of(contacts)
    assert [(f.severity, f.code, f.path) for f in found] == [
        ("error", "plaintext", "datasets.contacts.fields.phone")]
    assert f"{PLAIN} values" in found[0].message
    assert "7946" not in found[0].message  # never a value


def test_a_class_makes_its_fields_encrypted(contacts: Path, app_url: str,
                                            tmp_path: Path) -> None:
    policy = write(tmp_path, app_url, field={"class": "pii"},
                   classes={"pii": {"encrypted": True}})
    found = findings_of(policy)
    assert [f.code for f in found] == ["plaintext"]
    assert "classes.pii.encrypted" in found[0].message
    undeclared = write(tmp_path, app_url, field={"class": "pii"})
    assert findings_of(undeclared) == []  # nothing declared: nothing to check


def test_when_every_value_is_sealed_there_is_no_finding(contacts: Path, app_url: str) -> None:
    seal_the_plaintext(contacts, app_url)
    engine = sa.create_engine(normalize_url(app_url))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE contacts SET phone = NULL WHERE id = 80"))  # NULL: fine
    engine.dispose()
    assert findings_of(contacts) == []


def test_scan_reports_plaintext_in_an_encrypted_field(contacts: Path) -> None:
    rt = Runtime.open(load_policy(contacts), Clock(NOW))
    try:
        report = scan(rt.catalog, 1000, None)
    finally:
        rt.close()
    phone = next(c for c in report.columns if c.column == "phone")
    assert phone.status == "plaintext" and not report.ok
    assert [f.code for f in report.findings] == ["plaintext"]
    assert f"{PLAIN} of 80 sampled values" in report.findings[0].message
    done = subprocess.run([sys.executable, "-c", "from lethe.cli.app import main; main()",
                           "scan", "--policy", str(contacts)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    assert "+44 20" not in done.stdout + done.stderr


def test_the_trust_pages_say_encrypted_only_for_declared_checked_columns(
        contacts: Path, app_url: str, tmp_path: Path) -> None:
    policy = load_policy(contacts)

    def sealed() -> dict[str, tuple[str, ...]]:
        rt = Runtime.open(policy, Clock(NOW))
        try:
            return encryption_evidence(rt)
        finally:
            rt.close()

    def encrypted_claims(verified: dict[str, tuple[str, ...]] | None) -> list[Any]:
        return [c for c in trust_pages(policy, NOW, None, verified).claims
                if "ncrypted" in c.text]

    assert sealed() == {}  # 12 phones in plaintext: nothing may be called encrypted
    assert encrypted_claims(sealed()) == [] and encrypted_claims(None) == []
    seal_the_plaintext(contacts, app_url)
    assert sealed() == {"contacts": ("phone",)}
    said = encrypted_claims(sealed())
    assert {c.page for c in said} == {"data-inventory", "classification"}
    assert all(ENCRYPTED_AT_REST in c.text and "hone" in c.text for c in said)
    assert all("note" not in c.text.lower() for c in said)
    assert unbacked(policy, said) == []
    plain = load_policy(write(tmp_path, app_url, field={"class": "pii"}))
    assert not [c for c in trust_pages(plain, NOW, None, {"contacts": ("phone",)}).claims
                if "ncrypted" in c.text]  # not declared: never said, whatever is stored


def test_an_encrypted_field_cannot_be_anonymized_into_plaintext() -> None:
    with pytest.raises(PolicyError, match="would write plaintext"):
        parse_policy({
            "lethe": 1, "organization": "x", "stores": {"app": {"url": "sqlite:///x.db"}},
            "classes": {"pii": {"encrypted": True}},
            "datasets": {"u": {"store": "app", "table": "u", "class": "pii",
                               "fields": {"email": {"anonymize": "mask-email"}}}}})
    parse_policy({  # `null` empties the column: allowed
        "lethe": 1, "organization": "x", "stores": {"app": {"url": "sqlite:///x.db"}},
        "datasets": {"u": {"store": "app", "table": "u", "class": "pii",
                           "fields": {"email": {"anonymize": None, "encrypted": True}}}}})


def test_a_binary_column_cannot_be_declared_encrypted(app_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(normalize_url(app_url))
    blob = "bytea" if engine.dialect.name == "postgresql" else "blob"
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS contacts"))
        conn.execute(sa.text(f"CREATE TABLE contacts (id integer PRIMARY KEY, phone {blob}, "
                             "note varchar(100), created_at timestamp)"))
    engine.dispose()
    found = findings_of(write(tmp_path, app_url))
    assert [(f.code, f.path) for f in found] == [
        ("encrypted-unchecked", "datasets.contacts.fields.phone")]


def test_encrypted_is_for_sql_columns_only() -> None:
    with pytest.raises(PolicyError, match="encrypted"):
        parse_policy({
            "lethe": 1, "organization": "x", "stores": {"cache": {"url": "redis://h/0"}},
            "datasets": {"sessions": {"store": "cache", "pattern": "s:*", "class": "pii",
                                      "fields": {"token": {"encrypted": True}}}}})


def test_a_token_prefix_in_other_case_is_plaintext(contacts: Path, app_url: str) -> None:
    """`LETHE1:` is not a token: SQLite's LIKE would have let it pass (case-blind)."""
    engine = sa.create_engine(normalize_url(app_url))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE contacts SET phone = 'LETHE1:not sealed' WHERE id = 1"))
        conn.execute(sa.text("DELETE FROM contacts WHERE id BETWEEN 2 AND :n"), {"n": PLAIN})
    engine.dispose()
    found = findings_of(contacts)
    assert [f.code for f in found] == ["plaintext"] and "1 values" in found[0].message
