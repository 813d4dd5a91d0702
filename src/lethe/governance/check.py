"""`lethe check`: the policy against the live stores.

Findings are data (`Finding`), so the CLI, the API and the monthly report render
the same list. Values never appear in a finding, only names and counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lethe.audit.events import CheckRan
from lethe.audit.log import AuditLog
from lethe.catalog import Catalog, Finding, schema_findings, unhandled_references
from lethe.control.store import ControlStore
from lethe.control.transfers import Transfers
from lethe.control.workspaces import WorkspaceRegions
from lethe.crypto.fields import PREFIX as TOKEN_PREFIX
from lethe.errors import LetheError, SchemaMismatch
from lethe.governance.residency import residency_findings
from lethe.policy.encrypted import encrypted_fields
from lethe.policy.lifecycle import drift, lifecycle_days, lifecycle_rules
from lethe.policy.model import REQUEST_DEADLINE, Dataset, Policy
from lethe.policy.periods import KeepFrom, keeps_a_while, longest
from lethe.stores.base import (
    Eq,
    IsNull,
    NotLike,
    NotPositive,
    TableInfo,
    all_of,
    any_of,
    negate,
)
from lethe.stores.objects import S3Objects

OWN_TABLE_PREFIXES = ("lethe_", "sqlite_")


@dataclass(frozen=True)
class CheckReport:
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [f.as_dict() for f in self.findings]}


def undeclared_tables(catalog: Catalog) -> list[Finding]:
    """Shadow data: tables in a store that no dataset declares."""
    findings: list[Finding] = []
    policy = catalog.policy
    for store_name, store in policy.stores.items():
        if store.kind != "sql":
            continue
        declared = {ds.table for ds in policy.datasets.values() if ds.store == store_name}
        for table in sorted(catalog.row_store(store_name).tables()):
            if table not in declared and not table.startswith(OWN_TABLE_PREFIXES):
                findings.append(Finding("error", "undeclared-table", f"stores.{store_name}",
                                        f"table {table!r} is not declared by any dataset"))
    return findings


def _readable(catalog: Catalog) -> Iterator[tuple[str, Dataset, TableInfo]]:
    """Each SQL dataset whose table could be read, with it (a table that cannot is
    reported as a schema finding already)."""
    for name in catalog.sql_datasets():
        try:
            info = catalog.table_of(name)
        except SchemaMismatch:
            continue
        yield name, catalog.policy.datasets[name], info


def workspace_leaks(catalog: Catalog) -> list[Finding]:
    """Rows with no tenant: org-level rows must say '__org__', never NULL or ''."""
    findings: list[Finding] = []
    for name, ds, info in _readable(catalog):
        if not ds.workspace or ds.workspace not in info.columns:
            continue  # a missing column is reported as one
        count = catalog.store_of(name).count(
            ds.table or "", any_of(IsNull(ds.workspace), Eq(ds.workspace, "")))
        if count:
            findings.append(Finding("error", "workspace-leak", f"datasets.{name}.workspace",
                                    f"{count} rows have a NULL or empty {ds.workspace!r}"))
    return findings


def plaintext_fields(catalog: Catalog) -> list[Finding]:
    """Columns the policy declares encrypted that hold values which are not lethe
    field-encryption tokens (`lethe1:…`): how many, never which. A binary column cannot
    be told apart from its plaintext by a prefix, so declaring it is itself a finding."""
    findings: list[Finding] = []
    for name, ds, info in _readable(catalog):
        for column, source in encrypted_fields(catalog.policy, name).items():
            if column not in info.columns:
                continue  # reported as a missing column
            where = f"datasets.{name}.fields.{column}"
            if _BINARY.search(info.columns[column].type.upper()):
                findings.append(Finding(
                    "error", "encrypted-unchecked", where,
                    f"column {column!r} of {ds.table!r} is binary: declare `encrypted` on "
                    f"text columns, which hold {TOKEN_PREFIX!r} tokens ({source})"))
                continue
            plain = catalog.store_of(name).count(ds.table or "", all_of(
                negate(IsNull(column)), NotLike(column, TOKEN_PREFIX + "%")))
            if plain:
                findings.append(Finding(
                    "error", "plaintext", where,
                    f"{plain} values of column {column!r} of {ds.table!r} are not encrypted "
                    f"({source} says every value must be)"))
    return findings


_BINARY = re.compile(r"BLOB|BYTEA|BINARY|RAW")


def period_settings(catalog: Catalog) -> list[Finding]:
    """Settings a period from data is read from that are not a positive finite number:
    those rows' children are kept the default period, which the customer did not choose."""
    findings: list[Finding] = []
    for name, ds, _info in _readable(catalog):
        for index, rule in enumerate(ds.retention):
            keep = rule.keep
            if not isinstance(keep, KeepFrom) or not keep.from_:
                continue
            parent = catalog.policy.datasets[keep.dataset]
            try:
                bad = catalog.store_of(keep.dataset).count(parent.table or "",
                                                           NotPositive(keep.column))
            except LetheError:
                continue  # a missing or non-numeric column is a schema finding
            if bad:
                findings.append(Finding(
                    "warning", "invalid-period", f"datasets.{name}.retention[{index}].keep",
                    f"{bad} rows of {keep.dataset!r} have a {keep.column!r} that is not a "
                    f"positive finite number: their {name} rows are kept the default "
                    f"{keep.default}"))
    return findings


def unindexed_links(catalog: Catalog) -> list[Finding]:
    """A belongs_to column without an index makes every cascade scan the child table."""
    findings: list[Finding] = []
    for name, ds, info in _readable(catalog):
        for parent, column in ds.belongs_to.items():
            if column in info.columns and not info.has_index_on(column):
                findings.append(Finding("warning", "unindexed-link",
                                        f"datasets.{name}.belongs_to.{parent}",
                                        f"column {column!r} of {ds.table!r} has no index; "
                                        "cascading deletes will scan the table"))
    return findings


def blocking_references(catalog: Catalog) -> list[Finding]:
    """Foreign keys that will keep parent rows alive past their retention: only into
    datasets lethe deletes rows of (a table with no rule that no erasure or cascade
    deletes from is blocked in nothing)."""
    try:
        keys, nullable = catalog.keys(), catalog.nullable()
    except SchemaMismatch:
        return []  # reported as schema findings
    policy = catalog.policy
    findings = []
    for name, refs in unhandled_references(catalog, keys, nullable).items():
        if not _deletes_rows(policy, name):
            continue
        table = policy.datasets[name].table
        for ref in refs:
            if _declared(policy, name, ref.table, ref.column):
                continue  # `referenced_by`: the policy knows; they go when unreferenced
            findings.append(Finding(
                "warning", "blocking-reference", f"datasets.{name}",
                f"{ref.describe()} references {table}; rows it points at are kept until "
                f"those rows go ({_advice(policy, name, ref.table, ref.column)})"))
    return findings


def _deletes_rows(policy: Policy, name: str) -> bool:
    """Does lethe ever delete rows of this dataset: a deleting rule, a purge, an erasure
    (the subject's own rows, a child's by `erasure: delete`, rows the subject points at)?"""
    ds = policy.datasets[name]
    if ds.soft_delete is not None or any(r.action in ("delete", "archive")
                                         and keeps_a_while(r.keep) for r in ds.retention):
        return True
    if policy.subject_kind_of(name) is not None:
        return True
    return ds.erasure == "delete" and bool(ds.belongs_to or ds.referenced_by)


def _advice(policy: Policy, name: str, table: str, column: str) -> str:
    """How to let the reference go. A subject's rows (or rows linked to a subject) that
    point at a lookup row must not be made its children: deleting the lookup row would
    then delete the subjects. Point the other way instead."""
    referrer = _dataset_of(policy, name, table)
    if referrer is not None and _of_a_subject(policy, referrer):
        return (f"declare `referenced_by: {{{referrer}: {column}}}` on {name} so that access "
                "exports and erasure reach the rows a subject points at")
    return "declare it with belongs_to and erasure delete to cascade"


def _dataset_of(policy: Policy, name: str, table: str) -> str | None:
    """The dataset of `table` in the store of dataset `name`, if the policy has one."""
    return next((n for n, ds in policy.datasets.items()
                 if ds.table == table and ds.store == policy.datasets[name].store), None)


def _declared(policy: Policy, name: str, table: str, column: str) -> bool:
    referrer = _dataset_of(policy, name, table)
    return referrer is not None and policy.datasets[name].referenced_by.get(referrer) == column


def _of_a_subject(policy: Policy, name: str) -> bool:
    """Is the dataset a subject's own, or linked to one through belongs_to?"""
    subjects = {s.dataset for s in policy.subjects.values()}
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in subjects:
            return True
        if current not in seen:
            seen.add(current)
            todo += list(policy.datasets[current].belongs_to)
    return False


def cache_ttls(catalog: Catalog, now: datetime) -> list[Finding]:
    """Redis keys that would outlive the policy's maximum TTL (no TTL, or a longer one)
    until the next `run` caps them; held keys are counted too (the hold explains them)."""
    findings = []
    for name in catalog.cache_datasets():
        ds = catalog.policy.datasets[name]
        ttl = ds.max_ttl(now)
        if ttl is None:
            continue
        over = catalog.cache_store(ds.store).census(ds.pattern or "", ttl,
                                                    lambda _key: False).over
        if over:
            findings.append(Finding("error", "ttl-exceeded", f"datasets.{name}",
                                    f"{over} keys matching {ds.pattern!r} have no TTL or one "
                                    f"longer than {ds.retention[0].keep}"))
    return findings


def non_unique_keys(catalog: Catalog) -> list[Finding]:
    """A `key:` that is neither the primary key nor uniquely indexed: batches and
    anonymization address rows by it, so one row's rewrite could land on another. And
    one that accepts NULL: a batch that walks the key takes the rows of its window of
    keys (`key IN` it, or past the last key), which a row with no key is never in, so
    such a row is never erased, rewritten or swept by such batches (a PostgreSQL page
    walk of a plain delete, which does not walk the key, still takes it); the run's
    verification then finds it left, every run."""
    findings = []
    for name, ds, info in _readable(catalog):
        if not ds.key:
            continue
        columns = ds.key_columns
        for column in columns:
            found = info.columns.get(column)
            if found is not None and found.nullable:
                findings.append(Finding(
                    "warning", "nullable-key", f"datasets.{name}.key",
                    f"column {column!r} accepts NULL: a row with no key is in no window "
                    "of keys, so batches that walk the key never take it; make it NOT NULL"))
        if all(c in info.columns for c in columns) and \
                not any(set(unique) == set(columns) for unique in info.unique):
            named = f"column {columns[0]!r}" if len(columns) == 1 else \
                f"columns {', '.join(columns)}"
            findings.append(Finding("warning", "non-unique-key", f"datasets.{name}.key",
                                    f"{named} {'is' if len(columns) == 1 else 'are'} not "
                                    "the primary key or uniquely indexed"))
    return findings


def lifecycle_drift(catalog: Catalog) -> list[Finding]:
    """A bucket's lifecycle against the policy. A rule that expires a dataset's objects
    sooner than the policy keeps them is an error (the bucket deletes what the policy
    keeps); a missing lethe rule is a warning (`run` still enforces the policy)."""
    findings: list[Finding] = []
    policy = catalog.policy
    for store in dict.fromkeys(policy.datasets[n].store for n in catalog.object_datasets()):
        bucket = catalog.object_store(store)
        if not isinstance(bucket, S3Objects):
            continue
        wanted, _excluded = lifecycle_rules(policy, store, bucket.root)
        current = bucket.lifecycle()
        for problem in drift(wanted, current):
            severity = "warning" if problem.endswith("is missing") else "error"
            findings.append(Finding(severity, "lifecycle-drift", f"stores.{store}", problem))
        findings += _early_expiry(catalog, store, bucket.root, current)
    return findings


def _early_expiry(catalog: Catalog, store: str, root: str,
                  current: list[dict[str, Any]]) -> list[Finding]:
    """Bucket rules (lethe's or not) that expire a dataset's objects before its policy."""
    findings = []
    for name in catalog.object_datasets():
        ds = catalog.policy.datasets[name]
        if ds.store != store:
            continue
        prefix = root + (ds.prefix or "")
        # a prefix-wide expiry reaches objects of every rule, the longest-kept included
        longest_days = None if not ds.retention or any(
            not keeps_a_while(r.keep) for r in ds.retention) \
            else max(lifecycle_days(longest(r.keep)) for r in ds.retention)
        for rule in current:
            days = (rule.get("Expiration") or {}).get("Days")
            scope = str((rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", "")))
            if rule.get("Status") != "Enabled" or days is None:
                continue
            overlaps = prefix.startswith(scope) or scope.startswith(prefix)
            if overlaps and (longest_days is None or int(days) < longest_days):
                findings.append(Finding(
                    "error", "lifecycle-early", f"datasets.{name}",
                    f"bucket rule {rule.get('ID', '?')!r} expires objects after {days} days, "
                    "sooner than the policy keeps them"))
    return findings


def erasure_deadlines(policy: Policy, now: datetime) -> list[Finding]:
    """Promises that cannot both hold: an erasure request is due in REQUEST_DEADLINE, but
    a subject dataset with a recovery window completes it only once the window has
    passed (and a request is run after that). A window as long as the deadline makes
    every erasure late. (A zero or `forever` window has no soft-delete phase: erasure
    goes straight on, as `requests.erasure` does.)"""
    findings = []
    for kind, subject in policy.subjects.items():
        soft = policy.datasets[subject.dataset].soft_delete
        cutoff = None if soft is None or not soft.recover_for.amount else \
            soft.recover_for.before(now)
        if soft is not None and cutoff is not None and now - cutoff >= REQUEST_DEADLINE:
            findings.append(Finding(
                "error", "erasure-deadline", f"datasets.{subject.dataset}.soft_delete",
                f"an erasure of a {kind} completes only after the {soft.recover_for} "
                f"recovery window, which does not fit in the {REQUEST_DEADLINE.days} days "
                "a request is due in: every erasure would be late (shorten recover_for)"))
    return findings


def check(catalog: Catalog, audit: AuditLog | None = None,
          now: datetime | None = None, control: ControlStore | None = None) -> CheckReport:
    """Every check; residency needs the control store (API region preferences and
    authorised transfers), so without `control` it is not checked rather than misjudged."""
    findings = schema_findings(catalog)
    findings += erasure_deadlines(catalog.policy, now or datetime.now(UTC))
    findings += cache_ttls(catalog, now or datetime.now(UTC))
    findings += lifecycle_drift(catalog)
    findings += undeclared_tables(catalog)
    findings += workspace_leaks(catalog)
    findings += plaintext_fields(catalog)
    if control is not None:
        findings += residency_findings(catalog, WorkspaceRegions(control.engine),
                                       Transfers(control.engine).all(),
                                       now or datetime.now(UTC))
    findings += period_settings(catalog)
    findings += unindexed_links(catalog)
    findings += blocking_references(catalog)
    findings += non_unique_keys(catalog)
    report = CheckReport(tuple(findings))
    if audit is not None:
        errors = sum(f.severity == "error" for f in findings)
        audit.append(CheckRan(report.ok, errors, len(findings) - errors,
                              sorted({f.code for f in findings})))
    return report
