"""Certificates of deletion: signed, checkable offline, tamper-evident, never naming the subject."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lethe.cli import certificate as certificate_cli
from lethe.cli.options import Settings
from lethe.crypto.signing import OrganizationKeyError, create_key, key_id, public_pem
from lethe.errors import LetheError
from lethe.requests.certificate import (
    FORMAT,
    DatasetOutcome,
    build_certificate,
    load_certificate,
    sign_certificate,
    verify_certificate,
    write_certificate,
)

IDENTITY = "alice@example.com"
FINGERPRINT = hashlib.sha256(IDENTITY.encode()).hexdigest()[:12]
RECEIVED = datetime(2026, 5, 2, 9, 30, tzinfo=UTC)
COMPLETED = datetime(2026, 5, 20, 17, 5, 12, tzinfo=UTC)
DUE = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
ENTRY_HASHES = [hashlib.sha256(f"entry {n}".encode()).hexdigest() for n in range(3)]
HEAD_HASH = hashlib.sha256(b"head").hexdigest()
OUTCOMES = [
    DatasetOutcome("users", rows=1, erased=1, retained=0, held=0, action="delete"),
    DatasetOutcome("orders", rows=7, erased=0, retained=7, held=0, action="retain",
                   legal_basis="Tax law: invoices are kept 10 years"),
    DatasetOutcome("sessions", rows=40, erased=36, retained=0, held=4, action="delete",
                   legal_basis="legal hold: litigation 2026-17"),
    DatasetOutcome("events", rows=12, erased=10, retained=2, held=0, action="anonymize",
                   legal_basis="rows referenced by retained orders (foreign key)"),
]


def body(outcomes: list[DatasetOutcome] | None = None, **changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "organization": "Acme Analytics GmbH", "request_id": 42, "subject_kind": "customer",
        "subject_fingerprint": FINGERPRINT, "received_at": RECEIVED,
        "completed_at": COMPLETED, "outcomes": OUTCOMES if outcomes is None else outcomes,
        "audit_entries": [(1201, ENTRY_HASHES[1]), (1200, ENTRY_HASHES[0]),
                          (1207, ENTRY_HASHES[2])],
        "audit_checkpoint": (1210, HEAD_HASH), "due_at": DUE}
    arguments.update(changes)
    return build_certificate(**arguments)


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return create_key(tmp_path / "keys" / "organization.pem")


@pytest.fixture
def other_key(tmp_path: Path) -> Ed25519PrivateKey:
    return create_key(tmp_path / "keys" / "intruder.pem")


@pytest.fixture
def document(key: Ed25519PrivateKey) -> dict[str, Any]:
    return sign_certificate(body(), key)


# --- contents ---------------------------------------------------------------------------


def test_body_lists_datasets_totals_times_and_evidence() -> None:
    b = body()
    assert b["format"] == FORMAT
    assert b["organization"] == "Acme Analytics GmbH"
    assert b["request"] == 42
    assert b["subject"] == {"kind": "customer", "fingerprint": FINGERPRINT}
    assert b["received_at"] == "2026-05-02T09:30:00+00:00"
    assert b["completed_at"] == "2026-05-20T17:05:12+00:00"
    assert [d["dataset"] for d in b["datasets"]] == ["users", "orders", "sessions", "events"]
    assert b["datasets"][1] == {"dataset": "orders", "rows": 7, "erased": 0, "retained": 7,
                                "held": 0, "action": "retain",
                                "legal_basis": "Tax law: invoices are kept 10 years"}
    assert b["totals"] == {"rows": 60, "erased": 47, "retained": 9, "held": 4}
    assert b["evidence"] == {
        "audit_entries": [{"seq": 1200, "hash": ENTRY_HASHES[0]},
                          {"seq": 1201, "hash": ENTRY_HASHES[1]},
                          {"seq": 1207, "hash": ENTRY_HASHES[2]}],
        "checkpoint": {"seq": 1210, "head_hash": HEAD_HASH}}


def test_times_are_written_in_utc_and_naive_times_are_taken_as_utc() -> None:
    paris = datetime(2026, 5, 2, 13, 30, tzinfo=timezone(timedelta(hours=2)))
    b = body(received_at=paris, completed_at=datetime(2026, 5, 20, 17, 5, 12))
    assert b["received_at"] == "2026-05-02T11:30:00+00:00"
    assert b["completed_at"] == "2026-05-20T17:05:12+00:00"


def test_a_certificate_without_checkpoint_or_rows_is_still_valid(
        key: Ed25519PrivateKey) -> None:
    b = body(outcomes=[], audit_entries=[], audit_checkpoint=None)
    assert b["totals"] == {"rows": 0, "erased": 0, "retained": 0, "held": 0}
    assert b["evidence"] == {"audit_entries": [], "checkpoint": None}
    assert verify_certificate(sign_certificate(b, key)).ok


@pytest.mark.parametrize(("changes", "message"), [
    ({"subject_fingerprint": IDENTITY}, "never the identity"),
    ({"subject_fingerprint": "Alice Smith"}, "never the identity"),
    ({"subject_fingerprint": FINGERPRINT.upper()}, "hex digest"),
    ({"organization": " "}, "organization"),
    ({"subject_kind": ""}, "subject kind"),
    ({"completed_at": RECEIVED - timedelta(seconds=1)}, "completed before"),
    ({"outcomes": [OUTCOMES[0], OUTCOMES[0]]}, "twice"),
    ({"outcomes": [DatasetOutcome("users", 3, 1, 0, 0, "delete")]}, "not the 3 rows"),
    ({"outcomes": [DatasetOutcome("users", 1, 2, -1, 0, "delete")]}, "non-negative"),
    ({"outcomes": [DatasetOutcome("users", 1, 1, 0, 0, "burn")]}, "action"),
    ({"audit_entries": [(1, "abc")]}, "SHA-256"),
    ({"audit_entries": [(1, ENTRY_HASHES[0]), (1, ENTRY_HASHES[1])]}, "twice"),
    ({"audit_checkpoint": (9, "not-a-hash")}, "head_hash"),
])
def test_build_refuses_to_certify_nonsense(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(LetheError, match=message) as raised:
        body(**changes)
    assert raised.value.path == "request 42"


# --- round trip -------------------------------------------------------------------------


def test_sign_write_load_verify_round_trip(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    document = sign_certificate(body(), key)
    assert document["signature"]["algorithm"] == "Ed25519"
    assert document["signature"]["key_id"] == key_id(key)
    assert document["signature"]["public_key"] == public_pem(key)
    json_path, html_path = write_certificate(document, tmp_path / "out" / "certificates",
                                             stem="request-42")
    assert json_path == tmp_path / "out" / "certificates" / "request-42.json"
    assert html_path == tmp_path / "out" / "certificates" / "request-42.html"
    assert json_path.read_text(encoding="utf-8").startswith('{\n  "certificate": {')
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["request-42.html",
                                                                   "request-42.json"]
    loaded = load_certificate(json_path)
    assert loaded == document
    for trusted in (None, public_pem(key)):
        verdict = verify_certificate(loaded, trusted)
        assert verdict.ok, verdict.reason
        assert verdict.as_dict() == {"ok": True, "reason": None, "request": 42,
                                     "key_id": key_id(key)}


def test_non_ascii_text_survives_the_round_trip(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    b = body(organization="Société Générale — Zürich",
             outcomes=[DatasetOutcome("kunden", 2, 1, 1, 0, "delete", "§ 147 AO")])
    json_path, html_path = write_certificate(sign_certificate(b, key), tmp_path, stem="c")
    assert verify_certificate(load_certificate(json_path)).ok
    assert "Société Générale — Zürich" in html_path.read_text(encoding="utf-8")


# --- tampering --------------------------------------------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        target: Any = document
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    return change


def _erase_more(document: dict[str, Any]) -> None:
    """A consistent forgery: the numbers all add up, only the signature can tell."""
    orders = document["certificate"]["datasets"][1]
    orders["erased"], orders["retained"] = 7, 0
    document["certificate"]["totals"].update(erased=54, retained=2)


TAMPERING: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "a dataset's erased count": (_set(("certificate", "datasets", 2, "erased"), 40),
                                 "'sessions': erased 40 + retained 0 + held 4 is not the 40"),
    "the totals": (_set(("certificate", "totals", "erased"), 60),
                   "totals: erased says 60 but the datasets add up to 47"),
    "counts that still add up": (_erase_more, "signature: does not match"),
    "the subject fingerprint": (_set(("certificate", "subject", "fingerprint"), "0" * 12),
                                "signature: does not match"),
    "an evidence hash": (_set(("certificate", "evidence", "audit_entries", 1, "hash"),
                              "f" * 64), "signature: does not match"),
    "the checkpoint": (_set(("certificate", "evidence", "checkpoint", "seq"), 99),
                       "signature: does not match"),
    "a legal basis": (_set(("certificate", "datasets", 1, "legal_basis"), "consent"),
                      "signature: does not match"),
    "the request id": (_set(("certificate", "request"), 43), "signature: does not match"),
    "the signature value": (_set(("signature", "value"), "A" * 86 + "=="),
                            "signature: does not match"),
    "a signature that is not base64": (_set(("signature", "value"), "not base64!"),
                                       "signature: does not match"),
    "the algorithm": (_set(("signature", "algorithm"), "RSA"), "unsupported algorithm"),
    "the format": (_set(("certificate", "format"), "lethe-certificate-v0"),
                   "not a lethe certificate"),
    "the request id's type": (_set(("certificate", "request"), True), "request"),
    "a count's type": (_set(("certificate", "datasets", 0, "erased"), "1"), "non-negative"),
    "the completion time": (_set(("certificate", "completed_at"), "yesterday"), "ISO-8601"),
}


@pytest.mark.parametrize("what", sorted(TAMPERING))
def test_tampering_is_caught(document: dict[str, Any], key: Ed25519PrivateKey,
                             what: str) -> None:
    change, reason = TAMPERING[what]
    forged = copy.deepcopy(document)
    change(forged)
    for trusted in (None, public_pem(key)):
        verdict = verify_certificate(forged, trusted)
        assert not verdict.ok
        assert verdict.reason is not None and reason in verdict.reason, verdict.reason


def test_a_changed_number_is_caught_before_the_signature(document: dict[str, Any]) -> None:
    forged = copy.deepcopy(document)
    forged["certificate"]["totals"]["held"] = 0
    del forged["signature"]  # even with no signature at all, the arithmetic speaks first
    verdict = verify_certificate(forged)
    assert not verdict.ok and verdict.reason is not None
    assert verdict.reason.startswith("totals: held")
    assert verdict.request == 42


def test_swapped_embedded_key_is_caught_without_a_trusted_key(
        document: dict[str, Any], other_key: Ed25519PrivateKey) -> None:
    forged = copy.deepcopy(document)
    forged["signature"]["public_key"] = public_pem(other_key)
    verdict = verify_certificate(forged)
    assert not verdict.ok and verdict.reason is not None
    assert "does not match the embedded public key" in verdict.reason
    forged["signature"]["key_id"] = key_id(other_key)  # a forger fixes the key id too
    verdict = verify_certificate(forged)
    assert not verdict.ok and verdict.reason is not None
    assert "signature: does not match the certificate" in verdict.reason


def test_swapped_embedded_key_is_caught_with_a_trusted_key(
        document: dict[str, Any], key: Ed25519PrivateKey,
        other_key: Ed25519PrivateKey) -> None:
    forged = copy.deepcopy(document)
    forged["signature"]["public_key"] = public_pem(other_key)
    forged["signature"]["key_id"] = key_id(other_key)
    verdict = verify_certificate(forged, public_pem(key))
    assert not verdict.ok and verdict.reason is not None
    assert f"not by the trusted key {key_id(key)}" in verdict.reason


def test_a_certificate_re_signed_by_another_key_fails_against_the_trusted_key(
        document: dict[str, Any], key: Ed25519PrivateKey,
        other_key: Ed25519PrivateKey) -> None:
    forged = copy.deepcopy(document)
    forged["certificate"]["datasets"][1].update(erased=7, retained=0)
    forged["certificate"]["totals"].update(erased=54, retained=2)
    resigned = sign_certificate(forged["certificate"], other_key)
    assert verify_certificate(resigned).ok  # self-consistent: why pinning a key matters
    verdict = verify_certificate(resigned, public_pem(key))
    assert not verdict.ok and verdict.reason is not None
    assert verdict.reason == (f"signature: signed by key {key_id(other_key)}, not by the "
                              f"trusted key {key_id(key)}")
    assert verdict.key_id == key_id(other_key)


@pytest.mark.parametrize("broken", [
    [], {"certificate": []}, {"signature": {}},
    {"certificate": {"format": FORMAT}},
])
def test_documents_that_are_not_certificates_are_not_ok(broken: Any) -> None:
    verdict = verify_certificate(broken)
    assert not verdict.ok and verdict.reason


def test_an_unsigned_or_half_signed_certificate_is_not_ok(document: dict[str, Any]) -> None:
    assert verify_certificate({"certificate": document["certificate"]}).reason == (
        "the certificate is not signed")
    forged = copy.deepcopy(document)
    del forged["signature"]["key_id"]
    assert "must all be strings" in str(verify_certificate(forged).reason)
    forged = copy.deepcopy(document)
    forged["signature"]["public_key"] = "-----BEGIN PUBLIC KEY-----\nAAAA\n"
    assert "not an Ed25519 PEM key" in str(verify_certificate(forged).reason)


def test_a_malformed_trusted_key_is_a_usage_error(document: dict[str, Any]) -> None:
    with pytest.raises(OrganizationKeyError):
        verify_certificate(document, "not a key")


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9),
                                 st.integers(0, 10**9)), max_size=6),
       bump=st.integers(0, 100), delta=st.integers(1, 5))
def test_every_single_count_change_is_caught(counts: list[tuple[int, int, int]], bump: int,
                                             delta: int) -> None:
    key = Ed25519PrivateKey.generate()
    outcomes = [DatasetOutcome(f"dataset_{i}", e + r + h, e, r, h, "delete")
                for i, (e, r, h) in enumerate(counts)]
    document = sign_certificate(body(outcomes=outcomes), key)
    assert verify_certificate(document).ok
    places: list[tuple[Any, ...]] = [("totals", name)
                                     for name in ("rows", "erased", "retained", "held")]
    places += [("datasets", i, name) for i in range(len(counts))
               for name in ("rows", "erased", "retained", "held")]
    forged = copy.deepcopy(document)
    target: Any = forged["certificate"]
    *steps, last = places[bump % len(places)]
    for step in steps:
        target = target[step]
    target[last] += delta
    assert not verify_certificate(forged).ok


# --- files and HTML ---------------------------------------------------------------------


def test_html_shows_the_certificate_for_people(tmp_path: Path, document: dict[str, Any],
                                               key: Ed25519PrivateKey) -> None:
    _, html_path = write_certificate(document, tmp_path, stem="request-42")
    html = html_path.read_text(encoding="utf-8")
    assert "Acme Analytics GmbH" in html
    for outcome in OUTCOMES:
        assert f"<td>{outcome.dataset}</td>" in html
        if outcome.legal_basis:
            assert outcome.legal_basis in html
    assert "customer" in html and FINGERPRINT in html
    assert "2026-05-02T09:30:00+00:00" in html and "2026-05-20T17:05:12+00:00" in html
    assert "20 May 2026, 17:05 UTC" in html and "Yes: completed by the due date" in html
    assert '<td class="n">60</td>' in html and '<td class="n">47</td>' in html
    for digest in [*ENTRY_HASHES, HEAD_HASH]:
        assert digest in html
    assert key_id(key) in html


def test_html_escapes_every_value(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    b = body(organization="Acme & <Sons>",
             outcomes=[DatasetOutcome("<script>alert(1)</script>", 1, 0, 1, 0, "retain",
                                      '"><img src=x onerror=alert(2)>')])
    _, html_path = write_certificate(sign_certificate(b, key), tmp_path, stem="x")
    html = html_path.read_text(encoding="utf-8")
    assert "<script>" not in html and "<img" not in html and "<Sons>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Acme &amp; &lt;Sons&gt;" in html


def test_the_identity_never_appears_in_any_file(tmp_path: Path,
                                                document: dict[str, Any]) -> None:
    json_path, html_path = write_certificate(document, tmp_path, stem="request-42")
    for path in (json_path, html_path):
        text = path.read_text(encoding="utf-8").lower()
        assert "alice" not in text and "example.com" not in text
        assert FINGERPRINT in text


@pytest.mark.parametrize("stem", ["../escape", "a/b", "", ".hidden", "x" * 300])
def test_write_refuses_a_stem_that_is_not_a_plain_name(tmp_path: Path,
                                                       document: dict[str, Any],
                                                       stem: str) -> None:
    with pytest.raises(LetheError, match="file name"):
        write_certificate(document, tmp_path / "out", stem=stem)
    assert not (tmp_path / "out").exists()


def test_write_refuses_an_invalid_certificate(tmp_path: Path, document: dict[str, Any]) -> None:
    forged = copy.deepcopy(document)
    forged["certificate"]["totals"]["rows"] = 1
    with pytest.raises(LetheError, match="refusing to write an invalid certificate"):
        write_certificate(forged, tmp_path / "out", stem="c")
    with pytest.raises(LetheError, match="not signed"):
        write_certificate({"certificate": document["certificate"]}, tmp_path / "out", stem="c")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "invalid JSON at line 1"),
    ("[1, 2]", "expected a JSON object"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_load_explains_a_file_that_is_not_a_certificate(tmp_path: Path, content: str | bytes,
                                                        message: str) -> None:
    path = tmp_path / "c.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(LetheError, match=message) as raised:
        load_certificate(path)
    assert raised.value.path == str(path)


def test_load_explains_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LetheError, match="cannot read certificate") as raised:
        load_certificate(tmp_path / "missing.json")
    assert raised.value.exit_code == 2


# --- `lethe certificate verify` ---------------------------------------------------------


def cli() -> typer.Typer:
    """The sub-app mounted as app.py mounts it, with the same root callback."""
    root = typer.Typer(pretty_exceptions_enable=False)

    @root.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = Settings()

    root.add_typer(certificate_cli.app, name="certificate")
    return root


@pytest.fixture
def files(tmp_path: Path, document: dict[str, Any], key: Ed25519PrivateKey,
          other_key: Ed25519PrivateKey) -> dict[str, Path]:
    good, _ = write_certificate(document, tmp_path / "certs", stem="request-42")
    tampered = tmp_path / "certs" / "tampered.json"
    forged = copy.deepcopy(document)
    forged["certificate"]["subject"]["fingerprint"] = "0" * 12
    tampered.write_text(json.dumps(forged), encoding="utf-8")
    trusted, intruder = tmp_path / "trusted.pem", tmp_path / "intruder.pem"
    trusted.write_text(public_pem(key), encoding="ascii")
    intruder.write_text(public_pem(other_key), encoding="ascii")
    return {"good": good, "tampered": tampered, "trusted": trusted, "intruder": intruder}


def test_cli_verify_json_ok(files: dict[str, Path], key: Ed25519PrivateKey) -> None:
    result = CliRunner().invoke(cli(), ["certificate", "verify", str(files["good"]),
                                        "--public-key", str(files["trusted"]), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True, "reason": None, "request": 42,
                                         "key_id": key_id(key)}


def test_cli_verify_json_tampered_exits_1(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(cli(), ["certificate", "verify", str(files["tampered"]),
                                        "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert set(data) == {"ok", "reason", "request", "key_id"}
    assert data["ok"] is False and data["request"] == 42
    assert "signature: does not match" in data["reason"]


def test_cli_verify_against_another_trusted_key_exits_1(files: dict[str, Path],
                                                        key: Ed25519PrivateKey) -> None:
    result = CliRunner().invoke(cli(), ["certificate", "verify", str(files["good"]),
                                        "--public-key", str(files["intruder"]), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["key_id"] == key_id(key)
    assert "not by the trusted key" in data["reason"]


def test_cli_verify_prints_one_line_for_people(files: dict[str, Path],
                                               key: Ed25519PrivateKey) -> None:
    ok = CliRunner().invoke(cli(), ["certificate", "verify", str(files["good"])])
    assert ok.exit_code == 0
    assert ok.stdout.strip().splitlines() == [
        f"certificate ok: request 42, signed by its embedded key (not pinned) {key_id(key)}"]
    pinned = CliRunner().invoke(cli(), ["certificate", "verify", str(files["good"]),
                                        "--public-key", str(files["trusted"])])
    assert pinned.exit_code == 0 and "signed by the trusted key" in pinned.stdout
    bad = CliRunner().invoke(cli(), ["certificate", "verify", str(files["tampered"])])
    assert bad.exit_code == 1
    assert len(bad.stdout.strip().splitlines()) == 1
    assert bad.stdout.startswith("certificate INVALID: signature: does not match")


def test_cli_verify_unreadable_input_is_a_lethe_error(tmp_path: Path,
                                                      files: dict[str, Path]) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    result = CliRunner().invoke(cli(), ["certificate", "verify", str(broken), "--json"])
    assert isinstance(result.exception, LetheError)  # main() turns it into exit 2
    assert result.exception.exit_code == 2 and result.stdout == ""
    result = CliRunner().invoke(cli(), ["certificate", "verify", str(files["good"]),
                                        "--public-key", str(tmp_path / "missing.pem")])
    assert isinstance(result.exception, LetheError)
    assert "cannot read the public key file" in str(result.exception)


def test_cli_verify_needs_a_file() -> None:
    result = CliRunner().invoke(cli(), ["certificate", "verify"])
    assert result.exit_code == 2


# --- issue 19, item 4: a certificate a reviewer can use --------------------------------


def test_the_due_date_and_whether_it_was_met_are_signed() -> None:
    on_time = body()
    assert (on_time["due_at"], on_time["on_time"]) == ("2026-06-01T09:30:00+00:00", True)
    late = body(completed_at=DUE + timedelta(days=2))
    assert late["on_time"] is False


@pytest.mark.parametrize(("change", "message"), [
    (lambda b: b.update(on_time=False), "on_time does not say"),
    (lambda b: b.pop("due_at"), "due_at must be"),
    (lambda b: b.update(due_at="2026-04-01T00:00:00+00:00", on_time=False), "due_at must be")])
def test_a_due_date_that_does_not_add_up_is_caught(key: Ed25519PrivateKey,
                                                  change: Callable[[dict[str, Any]], Any],
                                                  message: str) -> None:
    changed = body()
    change(changed)
    verdict = verify_certificate(sign_certificate(changed, key))  # even signed so
    assert not verdict.ok and message in (verdict.reason or "")


def test_a_version_1_certificate_still_verifies(key: Ed25519PrivateKey) -> None:
    old = body()
    del old["due_at"], old["on_time"]
    old["format"] = "lethe-certificate-v1"
    assert verify_certificate(sign_certificate(old, key)).ok


@pytest.mark.parametrize("extra", [
    {"note": "verified by our auditors"}, {"signature": {"comment": "trusted"}}])
def test_any_field_outside_the_signed_body_fails(document: dict[str, Any],
                                                 extra: dict[str, Any]) -> None:
    added = copy.deepcopy(document)
    for name, value in extra.items():
        if isinstance(value, dict):
            added[name].update(value)
        else:
            added[name] = value
    verdict = verify_certificate(added)
    assert not verdict.ok and "fields outside the signed certificate" in (verdict.reason or "")
    assert verify_certificate(document).ok


def test_html_gives_times_a_person_reads_the_due_date_and_the_published_key(
        tmp_path: Path, key: Ed25519PrivateKey) -> None:
    late = sign_certificate(body(completed_at=DUE + timedelta(days=2)), key)
    _, html_path = write_certificate(late, tmp_path, stem="request-42")
    html = html_path.read_text(encoding="utf-8")
    assert "2 May 2026, 09:30 UTC" in html and "1 June 2026, 09:30 UTC" in html
    assert "3 June 2026, 09:30 UTC" in html and "No: completed after the due date" in html
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert hashlib.sha256(raw).hexdigest() in html and "organization-key.pem" in html
