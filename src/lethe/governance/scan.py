"""`lethe scan`: sample the SQL stores, find PII columns, compare with the policy.

Each text-like column of every table (lethe's own excepted) is sampled (a bounded,
read-only read, `stores.sample`) and every value run through the detectors of
`lethe.pii`. A column is classified by the share of sampled values each detector
matches; thresholds differ because the evidence does: a Luhn-valid card number or a
mod-97 IBAN is proof on its own, a capitalised "Given Family" is only a hint.

The report holds names, counts and shares only; sampled values never leave this module.
Values sealed by `lethe.crypto.fields` (`lethe1:…`) are counted as encrypted and not
inspected, so an encrypted column is never reported as undeclared PII.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lethe import pii
from lethe.catalog import Catalog, Finding
from lethe.crypto.fields import PREFIX as SEALED_PREFIX
from lethe.defaults import SCAN_SAMPLE
from lethe.governance.check import OWN_TABLE_PREFIXES
from lethe.policy.encrypted import encrypted_fields
from lethe.policy.model import Policy
from lethe.stores.sample import as_text, sample_columns, text_columns
from lethe.stores.sql import SqlStore

MAX_VALUE_CHARS = 10_000  # a long document is judged by its beginning
ENCRYPTED_SHARE = 0.5
# Share of sampled values a detector must match to classify the column.
MIN_SHARE = {pii.EMAIL: 0.01, pii.CARD: 0.01, pii.IBAN: 0.01, pii.TOKEN: 0.01,
             pii.CREDENTIAL: 0.01, pii.PHONE: 0.1, pii.IP: 0.1, pii.NAME: 0.5}
NAME_SHARE_WITH_HINT = 0.2
# How each kind is anonymized when a suggestion is applied (see ANONYMIZERS in the model).
ANONYMIZE = {pii.EMAIL: "mask-email", pii.NAME: "redact", pii.PHONE: "redact",
             pii.IP: "null", pii.CARD: "null", pii.IBAN: "null", pii.TOKEN: "null",
             pii.CREDENTIAL: "null"}


@dataclass(frozen=True)
class ColumnScan:
    store: str
    dataset: str | None
    table: str
    column: str
    sampled: int  # non-NULL values read
    counts: Mapping[str, int]  # values each detector matched
    encrypted: int  # values sealed by lethe's field encryption
    declared: str | None  # the column's class when the policy lists it in `fields:`
    nullable: bool = True
    must_encrypt: str | None = None  # the policy path declaring it encrypted, if any

    def share(self, kind: str) -> float:
        return self.counts.get(kind, 0) / self.sampled if self.sampled else 0.0

    @property
    def detected(self) -> tuple[str, ...]:
        """Kinds whose share reaches their threshold, most frequent first."""
        hinted = pii.name_hint(self.column, self.table)
        kinds = [k for k, n in self.counts.items() if n and self.share(k) >= (
            NAME_SHARE_WITH_HINT if k == pii.NAME and hinted else MIN_SHARE[k])]
        return tuple(sorted(kinds, key=lambda k: (-self.counts[k], pii.KINDS.index(k))))

    @property
    def is_encrypted(self) -> bool:
        return bool(self.sampled) and self.encrypted / self.sampled >= ENCRYPTED_SHARE

    @property
    def status(self) -> str:
        """plaintext (a finding: declared encrypted, not all of it is) | encrypted |
        undeclared (a finding) | declared | not-found (declared PII the sample did not
        show) | clean."""
        if self.must_encrypt is not None and self.encrypted < self.sampled:
            return "plaintext"  # declared encrypted; some sampled values are not
        if self.is_encrypted:
            return "encrypted"
        if self.detected:
            return "declared" if self.declared == "pii" else "undeclared"
        return "not-found" if self.declared == "pii" else "clean"

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "dataset": self.dataset, "table": self.table,
                "column": self.column, "detected": list(self.detected),
                "share": {k: round(self.share(k), 4) for k in self.detected},
                "declared": self.declared, "sampled": self.sampled,
                "encrypted": self.is_encrypted, "status": self.status}

    @property
    def label(self) -> str:
        return f"{self.store}.{self.table}.{self.column}"


@dataclass(frozen=True)
class ScanReport:
    columns: tuple[ColumnScan, ...]
    sample: int
    suggestions: dict[str, Any] = field(default_factory=dict)

    @property
    def undeclared(self) -> list[ColumnScan]:
        return [c for c in self.columns if c.status == "undeclared"]

    @property
    def plaintext(self) -> list[ColumnScan]:
        return [c for c in self.columns if c.status == "plaintext"]

    @property
    def ok(self) -> bool:
        return not self.undeclared and not self.plaintext

    @property
    def findings(self) -> list[Finding]:
        found = []
        for c in self.undeclared:
            where = f"datasets.{c.dataset}.fields.{c.column}" if c.dataset \
                else f"stores.{c.store}"
            kinds = ", ".join(f"{k} {c.share(k):.0%}" for k in c.detected)
            found.append(Finding("error", "undeclared-pii", where,
                                 f"column {c.column!r} of {c.table!r} looks like PII "
                                 f"({kinds} of {c.sampled} sampled values) but is not "
                                 "declared with class pii"))
        for c in self.plaintext:
            found.append(Finding("error", "plaintext", f"datasets.{c.dataset}.fields.{c.column}",
                                 f"{c.sampled - c.encrypted} of {c.sampled} sampled values of "
                                 f"column {c.column!r} of {c.table!r} are not encrypted "
                                 f"({c.must_encrypt} says every value must be)"))
        return found

    @property
    def coverage(self) -> dict[str, Any]:
        discovered = [c for c in self.columns if c.detected and not c.is_encrypted]
        declared = [c for c in self.columns if c.declared == "pii"]
        return {"declared": len(declared), "discovered": len(discovered),
                "covered": sum(c.declared == "pii" for c in discovered),
                "undeclared": [c.label for c in self.undeclared],
                "not_found": [c.label for c in self.columns if c.status == "not-found"],
                "encrypted": [c.label for c in self.columns if c.status == "encrypted"]}

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "sample": self.sample,
                "columns": [c.as_dict() for c in self.columns],
                "suggestions": self.suggestions, "coverage": self.coverage,
                "findings": [f.as_dict() for f in self.findings]}


def scan_column(values: Iterable[Any], column: str,
                table: str = "") -> tuple[int, dict[str, int], int]:
    """(non-NULL values, matches per kind, sealed values) for one column's sample."""
    sampled = sealed = 0
    counts: dict[str, int] = {}
    for raw in values:
        if raw is None:
            continue
        sampled += 1
        text = as_text(raw)
        if text is None:
            continue
        if text.startswith(SEALED_PREFIX):
            sealed += 1
            continue
        for kind in pii.detect(text[:MAX_VALUE_CHARS], column, table):
            counts[kind] = counts.get(kind, 0) + 1
    return sampled, counts, sealed


def _declared_class(policy: Policy, dataset: str | None, column: str) -> str | None:
    if dataset is None:
        return None
    ds = policy.datasets[dataset]
    spec = ds.fields.get(column)
    return None if spec is None else (spec.class_ or ds.class_)


def scan_table(catalog: Catalog, store_name: str, table: str, dataset: str | None,
               limit: int) -> list[ColumnScan]:
    store = catalog.row_store(store_name)
    if not isinstance(store, SqlStore):
        return []
    columns = text_columns(store, table)
    if not columns:
        return []
    rows = sample_columns(store, table, columns, limit)
    info = store.tables()[table].columns
    encrypted = encrypted_fields(catalog.policy, dataset) if dataset else {}
    scans = []
    for index, column in enumerate(columns):
        sampled, counts, sealed = scan_column((row[index] for row in rows), column, table)
        scans.append(ColumnScan(store_name, dataset, table, column, sampled, counts, sealed,
                                _declared_class(catalog.policy, dataset, column),
                                info[column].nullable if column in info else True,
                                encrypted.get(column)))
    return scans


def _dataset_name(table: str, taken: Iterable[str]) -> str:
    base = re.sub(r"\W", "_", table)
    base = base if re.match(r"[A-Za-z_]", base) else f"t_{base}"
    name, n, used = base, 1, set(taken)
    while name in used:
        n += 1
        name = f"{base}_{n}"
    return name


def suggest(policy: Policy, columns: Iterable[ColumnScan]) -> dict[str, Any]:
    """The `datasets:` entries (policy file format) that would declare every undeclared
    PII column: new `fields:` for declared datasets, whole datasets for other tables."""
    out: dict[str, Any] = {}
    new_names: dict[tuple[str, str], str] = {}
    for c in columns:
        if c.status != "undeclared":
            continue
        method = ANONYMIZE[c.detected[0]]
        if method == "null" and not c.nullable:
            method = "redact"
        if c.dataset is not None:
            spec = policy.datasets[c.dataset].fields.get(c.column)
            keep = spec.anonymize if spec is not None and spec.anonymize is not None \
                else method
            entry = out.setdefault(c.dataset, {"fields": {}})
            entry["fields"][c.column] = {"class": "pii", "anonymize": keep}
            continue
        name = new_names.get((c.store, c.table))
        if name is None:
            name = new_names[(c.store, c.table)] = _dataset_name(
                c.table, [*policy.datasets, *out])
            out[name] = {"store": c.store, "table": c.table, "class": "pii", "fields": {}}
        out[name]["fields"][c.column] = {"class": "pii", "anonymize": method}
    return {"datasets": out} if out else {}


def scan(catalog: Catalog, sample: int = SCAN_SAMPLE,
         stores: Iterable[str] | None = None) -> ScanReport:
    """Sample every table of the policy's SQL stores (or of `stores`) and classify."""
    policy = catalog.policy
    chosen = list(stores) if stores is not None else list(policy.stores)
    columns: list[ColumnScan] = []
    for store_name in chosen:
        if policy.stores[store_name].kind != "sql":
            continue
        by_table = {ds.table: name for name, ds in policy.datasets.items()
                    if ds.store == store_name and ds.table}
        for table in sorted(catalog.row_store(store_name).tables()):
            if table.startswith(OWN_TABLE_PREFIXES):
                continue
            columns += scan_table(catalog, store_name, table, by_table.get(table), sample)
    return ScanReport(tuple(columns), sample, suggest(policy, columns))
