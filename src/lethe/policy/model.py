"""The lethe.yaml model: validated once, trusted downstream.

Every structural rule that can be checked without a live store is checked here, so
an error points at a policy path before any store is touched.
"""

from __future__ import annotations

import string
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from lethe.policy.base import METADATA, DurationField, Strict, identifier
from lethe.policy.durations import Duration
from lethe.policy.periods import KeepField, KeepFrom, keeps_a_while
from lethe.policy.settings import ArchiveStorage as ArchiveStorage
from lethe.policy.settings import AuditPolicy as AuditPolicy
from lethe.policy.settings import ClassPolicy as ClassPolicy
from lethe.policy.settings import EncryptionPolicy as EncryptionPolicy
from lethe.policy.settings import Residency as Residency
from lethe.policy.settings import Schedule as Schedule
from lethe.policy.settings import Termination as Termination
from lethe.policy.settings import untraceable_archives
from lethe.stores.sql.engine import in_memory_sqlite

DataClass = Literal["pii", "behavioral", "operational", "derived"]
Action = Literal["delete", "soft-delete", "anonymize", "archive", "shred"]
Erasure = Literal["delete", "anonymize", "retain", "shred"]
Scalar = str | int | float | bool
# A data-subject request is due this long after it is received (GDPR's month, at its
# shortest): every window an erasure waits out must fit in it.
REQUEST_DEADLINE = timedelta(days=30)
# the subject kind of a workspace's termination request (`request open --workspace ID`)
TERMINATION = "workspace"

ANONYMIZERS = ("null", "redact", "hash", "mask-email", "mask-email-domain")
class Store(Strict):
    url: str
    region: str | None = None
    archive: ArchiveStorage | None = None  # an S3 store's storage class and encryption

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        if scheme not in {"sqlite", "postgresql", "postgres", "file", "s3", "redis", "rediss"}:
            raise ValueError(f"unsupported store URL scheme {scheme!r}")
        return url

    @model_validator(mode="after")
    def _s3_settings(self) -> Store:
        if self.archive is not None and not self.url.startswith("s3://"):
            raise ValueError("archive: storage classes and server-side encryption are S3's; "
                             "this store is not on S3")
        return self

    @property
    def kind(self) -> str:
        scheme = self.url.split(":", 1)[0].split("+", 1)[0]
        return {"sqlite": "sql", "postgresql": "sql", "postgres": "sql", "file": "objects",
                "s3": "objects", "redis": "cache", "rediss": "cache"}[scheme]


class Subject(Strict):
    dataset: str
    identities: list[str] = Field(min_length=1)


class FieldPolicy(Strict):
    """A column with a classification; `anonymize` is a method name or a fixed value;
    `encrypted`: every value must be a lethe field-encryption token (`check` and `scan`
    count the values that are not, and the trust pages say it only where it is set)."""

    class_: DataClass | None = Field(default=None, alias="class")
    anonymize: Scalar | None = None
    encrypted: bool = False
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _explicit_null(cls, data: Any) -> Any:
        # `anonymize: null` in YAML is the null method, not "no anonymizer".
        if isinstance(data, dict) and "anonymize" in data and data["anonymize"] is None:
            return {**data, "anonymize": "null"}
        return data


class SoftDelete(Strict):
    """Where a row's soft delete is recorded: by default `column` is a timestamp (NULL:
    live, set: soft-deleted then). A schema with a flag instead (`active: 0`) gives the
    flag's `deleted_value` and `at`, the time column that says since when (lethe sets
    both when it soft-deletes), so no schema change is needed to adopt lethe."""

    column: str
    recover_for: DurationField = Duration(30, "d")
    deleted_value: Scalar | None = None
    at: str | None = None

    @model_validator(mode="after")
    def _flag(self) -> SoftDelete:
        if (self.deleted_value is None) != (self.at is None):
            raise ValueError("a soft-delete flag needs both `deleted_value` (the value that "
                             "marks a row deleted) and `at` (the time column since when)")
        if self.at is not None:
            identifier(self.at, "column")
        return self

    @property
    def since(self) -> str:
        """The time column the recovery window is counted from."""
        return self.at or self.column


class Partitions(Strict):
    """How `run` reports the rows of a whole PostgreSQL partition it drops. `exact`
    counts them (a scan, while the parent table is locked); `estimate` takes the
    planner's row estimate instead (no scan), and the run says the figure is estimated."""

    count: Literal["exact", "estimate"] = "exact"


Condition = dict[str, Scalar | list[Scalar | None] | None]


class Rule(Strict):
    when: Condition = Field(default_factory=dict)
    keep: KeepField  # a duration, or a period each row's parent sets (lethe.policy.periods)
    after: str = ""  # the time column; a cache's rule has none (`keep` is a maximum TTL)
    action: Action = "delete"
    to: str | None = None

    @field_validator("when")
    @classmethod
    def _when_columns(cls, when: Condition) -> Condition:
        for column, value in when.items():
            if not METADATA.match(column):  # objects' rules test metadata.NAME
                for part in column.split(".", 1):  # a parent's column: PARENT.COLUMN
                    identifier(part, "column")
            if isinstance(value, list) and not value:
                raise ValueError(f"when.{column}: empty list matches nothing")
        return when

    @model_validator(mode="after")
    def _archive_target(self) -> Rule:
        if self.action == "archive" and not self.to:
            raise ValueError("action archive needs `to:` naming the archive store")
        if self.action != "archive" and self.to:
            raise ValueError("`to:` is only meaningful with action archive")
        return self


class Dataset(Strict):
    store: str
    table: str | None = None
    prefix: str | None = None
    pattern: str | None = None
    # one column, or a composite primary key's columns (`[payment_date, payment_id]`)
    key: str | list[str] | None = None
    class_: DataClass = Field(alias="class")
    workspace: str | None = None
    fields: dict[str, FieldPolicy] = Field(default_factory=dict)
    soft_delete: SoftDelete | None = None
    retention: list[Rule] = Field(default_factory=list)
    belongs_to: dict[str, str] = Field(default_factory=dict)
    # the other way round: dataset -> its column that points at this dataset's key
    # (customer.address_id -> address): this dataset's rows that a subject's rows point
    # at are the subject's too (access exports them, erasure handles them)
    referenced_by: dict[str, str] = Field(default_factory=dict)
    erasure: Erasure = "delete"
    legal_basis: str | None = None
    partitions: Partitions = Field(default_factory=Partitions)
    # subject kind -> where its data is in a key-addressed store: a Redis pattern
    # (`session:{id}:*`) or an object prefix, `{column}` filled from the subject's row
    per_subject: dict[str, str] = Field(default_factory=dict)
    # one line for the trust pages ("Sign-in sessions for the web and mobile apps")
    description: str | None = None
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> Dataset:
        locators = [x for x in (self.table, self.prefix, self.pattern) if x is not None]
        if len(locators) != 1:
            raise ValueError("a dataset needs exactly one of `table`, `prefix` or `pattern`")
        if self.table is None and any(f.encrypted for f in self.fields.values()):
            raise ValueError("`encrypted` fields are columns of a SQL table (lethe checks "
                             "every value is a field-encryption token)")
        if isinstance(self.key, list) and (len(self.key) < 2
                                           or len(set(self.key)) != len(self.key)):
            raise ValueError("key: a composite key lists two or more different columns")
        for name in (self.table, *self.key_columns, self.workspace, *self.fields,
                     *self.belongs_to.values(), *self.referenced_by.values()):
            if name is not None:
                identifier(name, "table or column")
        if self.soft_delete:
            identifier(self.soft_delete.column, "column")
        for kind, template in self.per_subject.items():
            placeholders = template_fields(template)
            if not placeholders:
                raise ValueError(f"per_subject.{kind}: the template names no {{column}} of "
                                 "the subject, so it would match every subject's data")
            for name in placeholders:
                identifier(name, "column")
        for index, rule in enumerate(self.retention):
            if self.prefix is not None:
                _object_rule(index, rule)
            elif rule.after:
                identifier(rule.after, "column")
                for column in rule.when:  # its own, or a parent's: PARENT.COLUMN
                    for part in column.split(".", 1):
                        identifier(part, "column")
            if rule.action == "soft-delete" and self.soft_delete is None:
                raise ValueError(f"retention[{index}]: action soft-delete needs `soft_delete:`")
            if rule.action == "anonymize" and not self.anonymized_fields:
                raise ValueError(f"retention[{index}]: action anonymize needs `fields` "
                                 "with `anonymize:`")
        if self.erasure == "anonymize" and not self.anonymized_fields:
            raise ValueError("erasure anonymize needs `fields` with `anonymize:`")
        if self.erasure == "retain" and not self.legal_basis:
            raise ValueError("erasure retain needs a `legal_basis`")
        return self

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The column(s) `key:` names (none: the primary key, read from the schema)."""
        if self.key is None:
            return ()
        return (self.key,) if isinstance(self.key, str) else tuple(self.key)

    @property
    def workspace_period(self) -> KeepFrom | None:
        """The bounds of the rule that lets each workspace choose its period through the
        API (`keep: {default, min, max}`, no `from:`; at most one per dataset)."""
        return next((r.keep for r in self.retention
                     if isinstance(r.keep, KeepFrom) and not r.keep.from_), None)

    def max_ttl(self, now: datetime) -> int | None:
        """A cache dataset's maximum TTL in seconds (calendar units counted back from now)."""
        if not self.retention:
            return None
        keep = self.retention[0].keep
        cutoff = keep.before(now) if isinstance(keep, Duration) else None
        return None if cutoff is None else max(1, int((now - cutoff).total_seconds()))

    @property
    def archive_targets(self) -> set[str]:
        """The stores this dataset's `archive` rules move rows to (none: it archives
        nothing)."""
        return {r.to for r in self.retention if r.action == "archive" and r.to}

    @property
    def anonymized_fields(self) -> dict[str, Scalar]:
        return {name: f.anonymize for name, f in self.fields.items() if f.anonymize is not None}


def _object_rule(index: int, rule: Rule) -> None:
    """An object's age is its last-modified time or a metadata timestamp; its rules test
    metadata only; the action is delete."""
    if rule.after not in ("", "last_modified") and not (
            METADATA.match(rule.after) and rule.after.startswith("metadata.")):
        raise ValueError(f"retention[{index}].after: an object's age is from `last_modified` "
                         "or `metadata.NAME`")
    for key in rule.when:
        if not METADATA.match(key):
            raise ValueError(f"retention[{index}].when: objects are tested on `metadata.NAME` "
                             "or `tag.NAME`")
    if rule.action != "delete":
        raise ValueError(f"retention[{index}].action: objects are deleted (delete)")


def template_fields(template: str) -> tuple[str, ...]:
    """The `{column}` names in a per-subject template, each once, in order."""
    return tuple(dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(template)
                               if name is not None))


def _period_source(policy: Policy, name: str, index: int, keep: KeepFrom) -> None:
    """A period from data is read from a dataset this one belongs to, in its store."""
    _parent_column(policy, name, f"retention[{index}].keep.from", keep.dataset)


def _parent_column(policy: Policy, name: str, path: str, parent: str) -> None:
    """A rule reads a column of `parent` (its period, its `when`): a dataset this one
    belongs to, in the same store (read in the same SQL statement)."""
    where = f"datasets.{name}.{path}"
    ds = policy.datasets[name]
    if parent not in ds.belongs_to:
        raise ValueError(f"{where}: {parent!r} is not a dataset {name!r} belongs_to")
    if policy.datasets[parent].store != ds.store:
        raise ValueError(f"{where}: {parent!r} is in another store (its column is read in "
                         "the same SQL statement)")


def _cache_dataset(where: str, ds: Dataset) -> None:
    """A Redis dataset: keys, not rows. Its one rule is a maximum TTL."""
    if ds.fields or ds.belongs_to or ds.soft_delete or ds.workspace or ds.key:
        raise ValueError(f"{where}: a cache dataset has keys, not columns: no `fields`, "
                         "`belongs_to`, `soft_delete`, `workspace` or `key`")
    if len(ds.retention) > 1:
        raise ValueError(f"{where}.retention: a cache dataset has one rule, its maximum TTL")
    for index, rule in enumerate(ds.retention):
        if rule.after or rule.when or rule.action != "delete":
            raise ValueError(f"{where}.retention[{index}]: a cache rule is only `keep:` "
                             "(the maximum TTL); no `after`, `when` or `action`")
        if not isinstance(rule.keep, Duration):
            raise ValueError(f"{where}.retention[{index}].keep: a maximum TTL is a "
                             "duration, not a period from data")
        if rule.keep.forever:
            raise ValueError(f"{where}.retention[{index}].keep: a maximum TTL cannot be "
                             "forever (leave the rule out)")
    if ds.erasure not in ("delete", "retain"):
        raise ValueError(f"{where}.erasure: a subject's keys are deleted or retained")


def _object_dataset(where: str, ds: Dataset) -> None:
    """An object dataset: objects under a prefix, no columns."""
    if ds.fields or ds.belongs_to or ds.soft_delete or ds.workspace or ds.key:
        raise ValueError(f"{where}: an object dataset has objects, not columns: no `fields`, "
                         "`belongs_to`, `soft_delete`, `workspace` or `key`")
    if ds.erasure not in ("delete", "retain"):
        raise ValueError(f"{where}.erasure: a subject's objects are deleted or retained")


class Policy(Strict):
    lethe: Literal[1]
    organization: str
    control: str = "sqlite:///.lethe/state.db"
    regions: list[str] = Field(default_factory=list)
    stores: dict[str, Store]
    subjects: dict[str, Subject] = Field(default_factory=dict)
    datasets: dict[str, Dataset]
    schedules: dict[str, Schedule] = Field(default_factory=dict)
    audit: AuditPolicy = Field(default_factory=AuditPolicy)
    encryption: EncryptionPolicy = Field(default_factory=EncryptionPolicy)
    classes: dict[DataClass, ClassPolicy] = Field(default_factory=dict)
    residency: Residency | None = None
    # a workspace's termination: when it is due and how long it can be cancelled
    termination: Termination | None = None
    # how long a row may outlive its limit before that is a breach ("deleted within 7
    # days"): `check` reports any due row older, and reports judge ages by it
    deletion_sla: DurationField | None = None

    @field_validator("control")
    @classmethod
    def _durable_control(cls, url: str) -> str:
        if in_memory_sqlite(url):
            raise ValueError("an in-memory SQLite control store forgets holds and the audit "
                             "log when the process ends; give a file (sqlite:///path/state.db)"
                             " or a server URL")
        return url

    def subject_kind_of(self, dataset: str) -> str | None:
        """The subject kind whose own dataset this is (None: nobody's own)."""
        return next((k for k, s in self.subjects.items() if s.dataset == dataset), None)

    @model_validator(mode="after")
    def _references(self) -> Policy:
        if self.deletion_sla is not None and self.deletion_sla.forever:
            raise ValueError("deletion_sla: a deletion SLA cannot be forever")
        if self.residency is not None:
            _residency(self)
        if self.termination is not None and not any(d.workspace for d in self.datasets.values()):
            raise ValueError("termination: no dataset declares its `workspace:` column, so "
                             "nothing can be found by workspace")
        for name in untraceable_archives(self.datasets) if self.termination else ():
            raise ValueError(f"datasets.{name}: a workspace's termination reaches it but "
                             "could not find its archived rows: declare its `workspace:`")
        if self.termination is not None and TERMINATION in self.subjects:
            raise ValueError(f"subjects.{TERMINATION}: with `termination:` declared, "
                             f"{TERMINATION!r} names a workspace's termination request, "
                             "not a subject kind: rename the subject")
        for name, store in self.stores.items():
            if self.regions and store.region and store.region not in self.regions:
                raise ValueError(f"stores.{name}.region: {store.region!r} is not in `regions`")
        for name, ds in self.datasets.items():
            identifier(name, "dataset")
            where = f"datasets.{name}"
            if ds.store not in self.stores:
                raise ValueError(f"{where}.store: unknown store {ds.store!r}")
            kind = self.stores[ds.store].kind
            needed = {"sql": "table", "objects": "prefix", "cache": "pattern"}[kind]
            if getattr(ds, needed) is None:
                raise ValueError(f"{where}: a {kind} store dataset needs `{needed}:`")
            if kind == "sql":
                for index, rule in enumerate(ds.retention):
                    if not rule.after and keeps_a_while(rule.keep):  # forever: no clock
                        raise ValueError(f"{where}.retention[{index}]: `after:` names the "
                                         "time column the age is counted from")
                    if isinstance(rule.keep, KeepFrom) and rule.keep.from_:
                        _period_source(self, name, index, rule.keep)
                    elif isinstance(rule.keep, KeepFrom) and not ds.workspace:
                        raise ValueError(f"{where}.retention[{index}].keep: a period set "
                                         "per workspace needs the dataset's `workspace:`")
                    for column in rule.when:
                        if "." in column:
                            _parent_column(self, name, f"retention[{index}].when.{column}",
                                           column.partition(".")[0])
                if sum(isinstance(r.keep, KeepFrom) and not r.keep.from_
                       for r in ds.retention) > 1:
                    raise ValueError(f"{where}.retention: one rule per dataset may let "
                                     "workspaces choose its period (a choice names the "
                                     "dataset)")
            elif any(isinstance(rule.keep, KeepFrom) for rule in ds.retention):
                raise ValueError(f"{where}.retention: a period from data is read in SQL; "
                                 f"only a SQL dataset's rules can have `keep: {{from: …}}`")
            if kind == "cache":
                _cache_dataset(where, ds)
            if kind == "objects":
                _object_dataset(where, ds)
            for subject_kind in ds.per_subject:
                if subject_kind not in self.subjects:
                    raise ValueError(f"{where}.per_subject: unknown subject kind "
                                     f"{subject_kind!r}")
            for parent in ds.belongs_to:
                if parent not in self.datasets:
                    raise ValueError(f"{where}.belongs_to: unknown dataset {parent!r}")
            for index, rule in enumerate(ds.retention):
                if rule.action == "shred" and self.subject_kind_of(name) is None:
                    raise ValueError(f"{where}.retention[{index}]: action shred destroys "
                                     "subjects' keys, so the dataset must be a subject's")
                if rule.to is not None and rule.to not in self.stores:
                    raise ValueError(f"{where}.retention[{index}].to: unknown store {rule.to!r}")
                if rule.to is not None and self.stores[rule.to].kind != "objects":
                    raise ValueError(f"{where}.retention[{index}].to: archives go to an "
                                     "object store (file:// or s3://)")
                if rule.action == "archive" and any(name in other.belongs_to for other
                                                    in self.datasets.values()):
                    raise ValueError(f"{where}.retention[{index}]: archiving a dataset that "
                                     "others belong to is not supported (their rows would "
                                     "lose their parent)")
        for name, subject in self.subjects.items():
            if subject.dataset not in self.datasets:
                raise ValueError(f"subjects.{name}.dataset: unknown dataset {subject.dataset!r}")
        for name, ds in self.datasets.items():
            _referenced_by(self, name, ds)
        for name, schedule in self.schedules.items():
            if schedule.datasets != "all":
                for ds_name in schedule.datasets:
                    if ds_name not in self.datasets:
                        raise ValueError(f"schedules.{name}.datasets: unknown dataset {ds_name!r}")
        return self


def _referenced_by(policy: Policy, name: str, ds: Dataset) -> None:
    """A dataset other rows point at (an address, a profile) hangs off its referrers
    only: not a subject's own table, not a child or parent through belongs_to, not
    pointed at through another such dataset, and SQL on both sides."""
    where = f"datasets.{name}.referenced_by"
    if not ds.referenced_by:
        return
    if policy.subject_kind_of(name) is not None:
        raise ValueError(f"{where}: a subject's own dataset is found by its identities")
    if ds.belongs_to or any(name in other.belongs_to for other in policy.datasets.values()):
        raise ValueError(f"{where}: a dataset found through its referrers cannot also be "
                         "linked with belongs_to")
    if policy.stores[ds.store].kind != "sql":
        raise ValueError(f"{where}: only SQL datasets can be found through a reference")
    if ds.archive_targets:
        raise ValueError(f"{where}: archiving a dataset found through a reference is not "
                         "supported (its archived rows could not be traced to a subject)")
    for referrer in ds.referenced_by:
        other = policy.datasets.get(referrer)
        if other is None:
            raise ValueError(f"{where}: unknown dataset {referrer!r}")
        if referrer == name or other.referenced_by:
            raise ValueError(f"{where}.{referrer}: must be a dataset found through "
                             "belongs_to or a subject's own, not through a reference")
        if policy.stores[other.store].kind != "sql":
            raise ValueError(f"{where}.{referrer}: only SQL datasets can point at rows")


def _residency(policy: Policy) -> None:
    """The residency section names a SQL dataset and regions the organization runs in."""
    residency = policy.residency
    assert residency is not None
    if not policy.regions:
        raise ValueError("residency: needs `regions:` listing the regions workspaces live in")
    ds = policy.datasets.get(residency.dataset)
    if ds is None:
        raise ValueError(f"residency.dataset: unknown dataset {residency.dataset!r}")
    store = policy.stores.get(ds.store)
    if store is not None and store.kind != "sql":
        raise ValueError("residency.dataset: workspace regions are read from a SQL table")
    if residency.default is not None and residency.default not in policy.regions:
        raise ValueError(f"residency.default: {residency.default!r} is not in `regions`")
