"""Certificates of deletion: what an erasure did, signed so anyone can check it offline.

A certificate is pure data. `build_certificate` turns the outcome of a completed erasure
into a body that names the subject only by kind and fingerprint, `sign_certificate`
wraps it with an Ed25519 signature over its canonical JSON, and `verify_certificate`
checks a document without lethe's database: structure, arithmetic (a changed number is
caught before the signature is even looked at), key id and signature. The HTML file is
a rendering for people; the JSON file is the evidence.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from lethe.audit.chain import canonical_json
from lethe.crypto.signing import (
    OrganizationKeyError,
    key_fingerprint,
    key_id,
    load_public,
    public_pem,
    sign,
    signature_valid,
)
from lethe.errors import LetheError

FORMAT = "lethe-certificate-v2"  # v1 (still verified) had no due date
FORMATS = ("lethe-certificate-v1", FORMAT)
DOCUMENT_FIELDS = frozenset(("certificate", "signature"))
SIGNATURE_FIELDS = frozenset(("algorithm", "key_id", "public_key", "value"))
ALGORITHM = "Ed25519"
ACTIONS = ("delete", "anonymize", "retain", "shred")
COUNTS = ("rows", "erased", "retained", "held")
TEMPLATE = "certificate.html.j2"

# A fingerprint is a lowercase hex digest (holds use 12 characters of SHA-256). Anything
# else, an e-mail address above all, is refused: the identity must never be certified.
_FINGERPRINT = re.compile(r"[0-9a-f]{8,128}")
_HASH = re.compile(r"[0-9a-f]{64}")
_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class DatasetOutcome:
    dataset: str
    rows: int  # rows found for the subject
    erased: int  # deleted or anonymized
    retained: int  # kept on purpose (erasure: retain, or blocked by a foreign key)
    held: int  # kept by a legal hold
    action: str  # "delete" | "anonymize" | "retain" | "shred"
    legal_basis: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "rows": self.rows, "erased": self.erased,
                "retained": self.retained, "held": self.held, "action": self.action,
                "legal_basis": self.legal_basis}


@dataclass(frozen=True)
class CertificateVerdict:
    ok: bool
    reason: str | None = None
    request: int | None = None
    key_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "request": self.request,
                "key_id": self.key_id}


# --- building and signing ---------------------------------------------------------------


def build_certificate(*, organization: str, request_id: int, subject_kind: str,
                      subject_fingerprint: str, received_at: datetime,
                      completed_at: datetime, outcomes: Sequence[DatasetOutcome],
                      audit_entries: Sequence[tuple[int, str]],
                      audit_checkpoint: tuple[int, str] | None,
                      due_at: datetime) -> dict[str, Any]:
    """The unsigned certificate body; raises `LetheError` rather than certify nonsense.

    Naive datetimes are taken as UTC (as `--now` is); the times are written in UTC, with
    the request's due date and whether it completed by then (`on_time`).
    Each outcome must account for every row found: `erased + retained + held == rows`.
    """
    where = f"request {request_id}"
    if not organization.strip():
        raise LetheError("the organization name is empty", path=where)
    if not subject_kind.strip():
        raise LetheError("the subject kind is empty", path=where)
    if not _FINGERPRINT.fullmatch(subject_fingerprint):
        raise LetheError("the subject fingerprint must be a lowercase hex digest, never "
                         "the identity itself", path=where)
    received, completed, due = _utc(received_at), _utc(completed_at), _utc(due_at)
    if completed < received:
        raise LetheError("the request completed before it was received", path=where)
    if due < received:
        raise LetheError("the request was due before it was received", path=where)
    datasets = [outcome.as_dict() for outcome in outcomes]
    names = [d["dataset"] for d in datasets]
    if len(set(names)) != len(names):
        raise LetheError("a dataset appears twice in the outcomes", path=where)
    body: dict[str, Any] = {
        "format": FORMAT,
        "organization": organization,
        "request": request_id,
        "subject": {"kind": subject_kind, "fingerprint": subject_fingerprint},
        "received_at": received.isoformat(),
        "due_at": due.isoformat(),
        "completed_at": completed.isoformat(),
        "on_time": completed <= due,
        "datasets": datasets,
        "totals": {name: sum(int(d[name]) for d in datasets) for name in COUNTS},
    }
    # what the checks above did not cover (the rest is built here from checked values;
    # the whole `body_problem` once per certificate was a tenth of a bulk erasure)
    problem = next((p for p in map(_dataset_problem, datasets) if p is not None), None)
    if problem is not None:
        raise LetheError(f"cannot certify: {problem}", path=where)
    return cite(body, audit_entries, audit_checkpoint)


def cite(body: dict[str, Any], audit_entries: Sequence[tuple[int, str]],
         audit_checkpoint: tuple[int, str] | None) -> dict[str, Any]:
    """The body with this evidence: the request's audit entries `(seq, hash)` and the
    signed checkpoint `(seq, head_hash)` covering them. Apart from the rest of the body,
    so the accounting can be checked before the evidence exists."""
    where = f"request {body['request']}"
    entries = sorted(audit_entries)
    if len({seq for seq, _ in entries}) != len(entries):
        raise LetheError("an audit entry appears twice in the evidence", path=where)
    evidence = {
        "audit_entries": [{"seq": seq, "hash": digest} for seq, digest in entries],
        "checkpoint": (None if audit_checkpoint is None else
                       {"seq": audit_checkpoint[0], "head_hash": audit_checkpoint[1]}),
    }
    problem = _evidence_problem(evidence)
    if problem is not None:
        raise LetheError(f"cannot certify: {problem}", path=where)
    return {**body, "evidence": evidence}


def sign_certificate(body: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Wrap the body with the organization's signature over its canonical JSON."""
    return _signed(body, key, _message(body))


def _signed(body: dict[str, Any], key: Ed25519PrivateKey, message: bytes) -> dict[str, Any]:
    identity, pem = _public_parts(key)
    return {"certificate": body,
            "signature": {"algorithm": ALGORITHM, "key_id": identity, "public_key": pem,
                          "value": sign(key, message)}}


def signed_text(body: dict[str, Any], key: Ed25519PrivateKey) -> tuple[dict[str, Any], str]:
    """The signed document, and its compact text for the control store with the body
    written once: as the canonical JSON the signature covers (keys sorted). A bulk run
    wrote the body twice a certificate, once to sign and once to keep (each ~25 µs, the
    largest Python cost of certifying). `reading_order` puts a document read back in
    the order a file shows it."""
    canonical = canonical_json(body)
    document = _signed(body, key, canonical.encode("utf-8"))
    signature = orjson.dumps(document["signature"]).decode()  # (its text: key order kept)
    return document, f'{{"certificate":{canonical},"signature":{signature}}}'


_BODY_ORDER = ("format", "organization", "request", "subject", "received_at", "due_at",
               "completed_at", "on_time", "datasets", "totals", "evidence")
_NESTED_ORDER = {"subject": ("kind", "fingerprint"), "totals": COUNTS,
                 "evidence": ("audit_entries", "checkpoint")}


def _ordered(data: Any, order: Sequence[str]) -> Any:
    """A dict with the keys in `order` first, in that order, then the rest as they were."""
    if not isinstance(data, dict):
        return data
    return {**{k: data[k] for k in order if k in data},
            **{k: v for k, v in data.items() if k not in order}}


def reading_order(document: dict[str, Any]) -> dict[str, Any]:
    """A certificate read back from the control store (`signed_text` keeps the body's
    keys sorted) with its keys in the order lethe builds it, so a file written from it
    reads as one written at completion: the same values, the same signature."""
    body = _ordered(document.get("certificate"), _BODY_ORDER)
    if isinstance(body, dict):
        for name, order in _NESTED_ORDER.items():
            if name in body:
                body[name] = _ordered(body[name], order)
        if isinstance(body.get("datasets"), list):
            outcome = tuple(DatasetOutcome.__dataclass_fields__)
            body["datasets"] = [_ordered(d, outcome) for d in body["datasets"]]
        evidence = body.get("evidence")
        if isinstance(evidence, dict):
            if isinstance(evidence.get("audit_entries"), list):
                evidence["audit_entries"] = [_ordered(e, ("seq", "hash"))
                                             for e in evidence["audit_entries"]]
            if "checkpoint" in evidence:
                evidence["checkpoint"] = _ordered(evidence["checkpoint"], ("seq", "head_hash"))
    ordered = dict(document)
    if "certificate" in ordered:
        ordered["certificate"] = body
    return dict(_ordered(ordered, ("certificate", "signature")))


@functools.lru_cache(maxsize=4)
def _public_parts(key: Ed25519PrivateKey) -> tuple[str, str]:
    """The key's id and public PEM, serialized once per key, not once per certificate
    (a bulk run signs thousands with the one organization key)."""
    return key_id(key), public_pem(key)


def _message(body: Mapping[str, Any]) -> bytes:
    return canonical_json(body).encode("utf-8")


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC)


# --- verifying --------------------------------------------------------------------------


def verify_certificate(document: dict[str, Any],
                       trusted_public_pem: str | None = None) -> CertificateVerdict:
    """Check structure, arithmetic, key id and signature, in that order.

    With `trusted_public_pem` the certificate must be signed by that key (and must say
    so); without it the embedded key is used, which proves integrity but not origin.
    A malformed trusted key is a usage error (`OrganizationKeyError`), not a verdict.
    """
    trusted = load_public(trusted_public_pem) if trusted_public_pem is not None else None
    if not isinstance(document, dict):
        return CertificateVerdict(False, "not a lethe certificate: expected a JSON object")
    body, signature = document.get("certificate"), document.get("signature")
    outside = sorted(set(document) - DOCUMENT_FIELDS) + sorted(
        f"signature.{name}" for name in
        (set(signature) - SIGNATURE_FIELDS if isinstance(signature, dict) else ()))
    if outside:  # nothing a reader is shown may sit beside the signed body unsigned
        return CertificateVerdict(False, "fields outside the signed certificate: "
                                  + ", ".join(outside)[:200])
    if not isinstance(body, dict):
        return CertificateVerdict(False, "not a lethe certificate: no `certificate` object")
    request = body.get("request")
    request = request if _is_int(request) else None
    problem = body_problem(body)
    if problem is not None:
        return CertificateVerdict(False, problem, request)
    if not isinstance(signature, dict):
        return CertificateVerdict(False, "the certificate is not signed", request)
    declared = signature.get("key_id")
    declared = declared if isinstance(declared, str) else None
    fields = [signature.get(name) for name in ("algorithm", "key_id", "public_key", "value")]
    if not all(isinstance(value, str) for value in fields):
        return CertificateVerdict(False, "signature: algorithm, key_id, public_key and value "
                                  "must all be strings", request, declared)
    if signature["algorithm"] != ALGORITHM:
        return CertificateVerdict(False, f"signature: unsupported algorithm "
                                  f"{signature['algorithm']!r}", request, declared)
    try:
        embedded = load_public(signature["public_key"])
    except OrganizationKeyError:
        return CertificateVerdict(False, "signature: the embedded public key is not an "
                                  "Ed25519 PEM key", request, declared)
    if key_id(embedded) != declared:
        return CertificateVerdict(False, f"signature: key_id {declared} does not match the "
                                  f"embedded public key ({key_id(embedded)})", request, declared)
    key: Ed25519PublicKey = embedded
    if trusted is not None:
        if key_id(trusted) != declared or public_pem(trusted) != public_pem(embedded):
            return CertificateVerdict(False, f"signature: signed by key {declared}, not by the "
                                      f"trusted key {key_id(trusted)}", request, declared)
        key = trusted
    if not signature_valid(key, _message(body), signature["value"]):
        return CertificateVerdict(False, "signature: does not match the certificate (the "
                                  "certificate or its signature was altered)", request, declared)
    return CertificateVerdict(True, None, request, declared)


def body_problem(body: Mapping[str, Any]) -> str | None:
    """The first thing wrong with a certificate body, or None; no cryptography involved."""
    if body.get("format") not in FORMATS:
        return f"not a lethe certificate: format is not {FORMAT!r}"
    if not isinstance(body.get("organization"), str) or not body["organization"]:
        return "organization: missing"
    if not _is_int(body.get("request")):
        return "request: not an integer id"
    subject = body.get("subject")
    if (not isinstance(subject, dict) or not isinstance(subject.get("kind"), str)
            or not isinstance(subject.get("fingerprint"), str)):
        return "subject: needs a kind and a fingerprint"
    if not _FINGERPRINT.fullmatch(subject["fingerprint"]):
        return "subject: the fingerprint is not a hex digest"
    times = [_instant(body.get(name)) for name in ("received_at", "completed_at")]
    if times[0] is None or times[1] is None:
        return "received_at and completed_at must be ISO-8601 times with an offset"
    if times[1] < times[0]:
        return "completed_at is before received_at"
    if body["format"] != FORMATS[0]:  # since v2: the due date, and whether it was met
        due = _instant(body.get("due_at"))
        if due is None or due < times[0]:
            return "due_at must be an ISO-8601 time with an offset, not before received_at"
        if body.get("on_time") is not (times[1] <= due):
            return "on_time does not say whether completed_at is by due_at"
    datasets = body.get("datasets")
    if not isinstance(datasets, list):
        return "datasets: not a list"
    for index, entry in enumerate(datasets):
        problem = _dataset_problem(entry)
        if problem is not None:
            return f"datasets[{index}]: {problem}"
    totals = body.get("totals")
    if not isinstance(totals, dict):
        return "totals: missing"
    for name in COUNTS:
        expected = sum(entry[name] for entry in datasets)
        if totals.get(name) != expected or not _is_int(totals.get(name)):
            return (f"totals: {name} says {totals.get(name)!r} but the datasets add up "
                    f"to {expected}")
    return _evidence_problem(body.get("evidence"))


def _dataset_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("dataset"), str):
        return "not a dataset outcome"
    name = entry["dataset"]
    for count in COUNTS:
        if not _is_int(entry.get(count)) or entry[count] < 0:
            return f"dataset {name!r}: {count} is not a non-negative integer"
    if entry["erased"] + entry["retained"] + entry["held"] != entry["rows"]:
        return (f"dataset {name!r}: erased {entry['erased']} + retained {entry['retained']} "
                f"+ held {entry['held']} is not the {entry['rows']} rows found")
    if entry.get("action") not in ACTIONS:
        return f"dataset {name!r}: action must be one of {', '.join(ACTIONS)}"
    if entry.get("legal_basis") is not None and not isinstance(entry["legal_basis"], str):
        return f"dataset {name!r}: legal_basis must be text or null"
    return None


def _evidence_problem(evidence: Any) -> str | None:
    if not isinstance(evidence, dict) or not isinstance(evidence.get("audit_entries"), list):
        return "evidence: needs a list of audit_entries"
    for entry in evidence["audit_entries"]:
        if (not isinstance(entry, dict) or not _is_int(entry.get("seq"))
                or not _is_hash(entry.get("hash"))):
            return "evidence: every audit entry needs a seq and a SHA-256 hash"
    mark = evidence.get("checkpoint")
    if mark is not None and (not isinstance(mark, dict) or not _is_int(mark.get("seq"))
                             or not _is_hash(mark.get("head_hash"))):
        return "evidence: the checkpoint needs a seq and a SHA-256 head_hash"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and _HASH.fullmatch(value) is not None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


# --- files ------------------------------------------------------------------------------


def write_certificate(document: dict[str, Any], directory: Path, *,
                      stem: str) -> tuple[Path, Path]:
    """Write STEM.json (the evidence) and STEM.html (for people); return both paths.

    Each file is written to a temporary name and renamed, so a crash never leaves half
    a certificate behind.
    """
    json_path, html_path = certificate_paths(directory, stem)
    html = certificate_html(document, where=str(json_path))
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(json_path, certificate_text(document))
    _write_atomic(html_path, html)
    return json_path, html_path


def certificate_paths(directory: Path, stem: str) -> tuple[Path, Path]:
    """Where `write_certificate` puts STEM's JSON and HTML files (known before they are
    written)."""
    if not _STEM.fullmatch(stem):
        raise LetheError("a certificate file name may use letters, digits, '.', '_' and "
                         "'-' only", path=stem)
    return directory / f"{stem}.json", directory / f"{stem}.html"


def certificate_text(document: dict[str, Any]) -> str:
    """The JSON file's text. The signature covers the canonical form of the body, so this
    text and the control store's (`signed_text`) verify the same."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def certificate_html(document: dict[str, Any], *, where: str = "certificate") -> str:
    """The readable rendering; refuses a document that is not a signed certificate."""
    body = document.get("certificate")
    problem = body_problem(body) if isinstance(body, dict) else "no `certificate` object"
    if problem is None and not isinstance(document.get("signature"), dict):
        problem = "the certificate is not signed"
    if problem is not None:
        raise LetheError(f"refusing to write an invalid certificate: {problem}", path=where)
    return _template().render(certificate=body, signature=document["signature"])


def load_certificate(path: Path) -> dict[str, Any]:
    """Parse a certificate file; whether it is genuine is `verify_certificate`'s job."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LetheError(f"cannot read certificate: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError:
        raise LetheError("not a certificate: the file is not UTF-8 text",
                         path=str(path)) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LetheError(f"not a certificate: invalid JSON at line {exc.lineno} column "
                         f"{exc.colno}", path=str(path)) from None
    if not isinstance(document, dict):
        raise LetheError("not a certificate: expected a JSON object", path=str(path))
    return document


def _write_atomic(path: Path, text: str) -> None:
    # Not mkstemp: its 0600 would hide a document meant to be handed out; the umask decides.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@cache
def _template() -> jinja2.Template:
    # `.html.j2` is not an extension select_autoescape knows, so escaping is switched on
    # explicitly; StrictUndefined turns a template typo into an error, not a blank cell.
    environment = jinja2.Environment(loader=jinja2.PackageLoader("lethe.requests", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True)
    environment.filters.update(when=readable_time, key_fingerprint=public_key_fingerprint)
    return environment.get_template(TEMPLATE)


def readable_time(value: str) -> str:
    """`2026-05-20T17:05:12+00:00` as a person reads it: `20 May 2026, 17:05 UTC`."""
    moment = _instant(value)
    return value if moment is None else f"{_utc(moment):%-d %B %Y, %H:%M} UTC"


def public_key_fingerprint(pem: str) -> str:
    """SHA-256 of a PEM public key's raw bytes, as `lethe docs` publishes it."""
    try:
        return key_fingerprint(load_public(pem))
    except OrganizationKeyError:
        return "not an Ed25519 key"
