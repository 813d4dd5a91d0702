"""Audit events: named, registered dataclasses. An unregistered event cannot be written.

Details never carry PII: subjects appear as a short fingerprint, rows as counts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from lethe.errors import LetheError
from lethe.pii import mask

REGISTRY: dict[str, type[AuditEvent]] = {}


@dataclass(frozen=True)
class AuditEvent:
    names: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        return self.names[0] if self.names else type(self).__name__

    target_format: ClassVar[str] = ""  # e.g. "run:{run}", filled from the event's fields

    @property
    def target(self) -> str:
        return self.target_format.format(**self._values())

    # Fields of free text a person typed (besides `reason_text`): masked like log lines.
    free_text: ClassVar[tuple[str, ...]] = ()

    @property
    def reason(self) -> str:
        """Free text a person gave (a hold's reason); it goes to the entry's reason column,
        masked as the logs are (lethe.pii.mask): an entry can never be edited, so an
        email or a card number typed into a reason must not reach it."""
        text = str(getattr(self, "reason_text", ""))
        return mask(text) if text else text  # most events carry none: skip the detectors

    def details(self) -> dict[str, Any]:
        """The details as plain JSON values (lists and dicts copied: the caller's own)."""
        return {name: _plain(value) for name, value in self.entry()[1].items()}

    def entry(self) -> tuple[str, dict[str, Any]]:
        """Target and details, from one read of the fields, for encoding only: nested
        values are the event's own, not copies (appends are hot in bulk)."""
        values = self._values()
        target = self.target_format.format(**values)
        values.pop("reason_text", None)
        for name in self.free_text:
            if isinstance(values.get(name), str):
                values[name] = mask(values[name])
        return target, values

    def _values(self) -> dict[str, Any]:
        """Field values (not `asdict`: its deep copy dominated bulk appends)."""
        cls = type(self)
        names = _FIELD_NAMES.get(cls)
        if names is None:
            names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
        return {name: getattr(self, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """JSON's view of a value: tuples as lists, containers copied."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def registered(cls: type[AuditEvent]) -> type[AuditEvent]:
    for name in cls.names:
        REGISTRY[name] = cls
    return cls


def require_registered(event: AuditEvent) -> None:
    if REGISTRY.get(event.name) is not type(event):
        raise LetheError(f"unregistered audit event {event.name!r}", path="audit")


@registered
@dataclass(frozen=True)
class RunStarted(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("run.started",)
    run: int
    now: str
    datasets: list[str]

    target_format: ClassVar[str] = "run:{run}"


RETENTION_ACTIONS = ("delete", "soft-delete", "anonymize", "purge", "cascade", "archive",
                     "shred", "expire", "remove", "remove-archived")


@registered
@dataclass(frozen=True)
class RetentionStep(AuditEvent):
    """One step of a run, summarising its batches."""

    names: ClassVar[tuple[str, ...]] = tuple(f"retention.{a}" for a in RETENTION_ACTIONS)
    run: int
    dataset: str
    rule: int | None
    action: str
    parent: str | None
    planned: int
    held: int
    done: int
    batches: int
    verified: bool
    remaining: int | None
    error: str | None
    estimated: bool = False  # `done` includes a dropped partition's planner estimate
    # due rows a foreign key kept when the step was verified, and the keys keeping them
    blocked: int = 0
    blocked_by: dict[str, int] | None = None

    @property
    def name(self) -> str:
        return f"retention.{self.action}"

    target_format: ClassVar[str] = "dataset:{dataset}"


@registered
@dataclass(frozen=True)
class ArchiveRestoreRequested(AuditEvent):
    """A chunk in a cold storage class (GLACIER, DEEP_ARCHIVE) asked to be restored, so
    that an erasure or `archive restore` can read it in a later run."""

    names: ClassVar[tuple[str, ...]] = ("archive.restore-requested",)
    dataset: str
    chunk: str
    tier: str
    days: int

    target_format: ClassVar[str] = "dataset:{dataset}"


@registered
@dataclass(frozen=True)
class RetentionBatch(AuditEvent):
    """A unit of a step's work (a row batch, a partition, a page of objects), written
    with the run's progress before that work commits in its own store: nothing goes
    that no entry covers. A crash between the two leaves an entry for work that did not
    commit; the step's `retention.<action>` entry (or the recovery's) gives the rows
    that did, at most one unit over after a crash."""

    names: ClassVar[tuple[str, ...]] = ("retention.batch",)
    run: int
    dataset: str
    action: str
    rows: int
    cascaded: dict[str, int]  # rows of same-store children that go with the batch

    target_format: ClassVar[str] = "dataset:{dataset}"


@registered
@dataclass(frozen=True)
class RunFinished(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("run.finished",)
    run: int
    status: str
    rows: int
    verified: bool

    target_format: ClassVar[str] = "run:{run}"


@registered
@dataclass(frozen=True)
class HoldPlaced(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("hold.placed",)
    hold: int
    scope_kind: str
    subject_kind: str | None
    scope: str  # dataset or workspace name, or a fingerprint for a subject
    reason_text: str

    target_format: ClassVar[str] = "hold:{hold}"



@registered
@dataclass(frozen=True)
class HoldReleased(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("hold.released",)
    hold: int
    reason_text: str

    target_format: ClassVar[str] = "hold:{hold}"



@registered
@dataclass(frozen=True)
class ArchiveWritten(AuditEvent):
    """Rows archived: the chunk, verified, is now their only copy."""

    names: ClassVar[tuple[str, ...]] = ("archive.written",)
    dataset: str
    chunk: str
    rows: int
    sha256: str

    target_format: ClassVar[str] = "dataset:{dataset}"


@registered
@dataclass(frozen=True)
class PartitionsDropped(AuditEvent):
    """Whole partitions past retention detached and dropped (archived first, for an
    archive rule). `estimated`: `rows` is the planner's estimate for some partition
    (`partitions: {count: estimate}`), not a count."""

    names: ClassVar[tuple[str, ...]] = ("partitions.dropped",)
    dataset: str
    action: str
    partitions: list[str]
    rows: int
    estimated: bool

    target_format: ClassVar[str] = "dataset:{dataset}"


@registered
@dataclass(frozen=True)
class LifecycleSet(AuditEvent):
    """lethe's lifecycle rules on a bucket changed: applied, or withdrawn for a hold."""

    names: ClassVar[tuple[str, ...]] = ("lifecycle.applied", "lifecycle.withdrawn")
    store: str
    change: str  # applied | withdrawn
    rules: list[str]

    @property
    def name(self) -> str:
        return f"lifecycle.{self.change}"

    target_format: ClassVar[str] = "store:{store}"


@registered
@dataclass(frozen=True)
class CheckRan(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("check.ran",)
    ok: bool
    errors: int
    warnings: int
    codes: list[str]

    target_format: ClassVar[str] = "policy"


@registered
@dataclass(frozen=True)
class AuditPruned(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("audit.pruned",)
    through_seq: int
    removed: int
    older_than: str

    target_format: ClassVar[str] = "audit"


@registered
@dataclass(frozen=True)
class AuditExported(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("audit.exported",)
    entries: int
    checkpoints: int

    target_format: ClassVar[str] = "audit"


@registered
@dataclass(frozen=True)
class RequestTransition(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("request.received", "request.verified",
                                        "request.in_progress", "request.completed",
                                        "request.rejected")
    request: int
    kind: str
    subject_kind: str
    subject: str  # fingerprint, never the identities
    status: str
    note: str | None
    free_text: ClassVar[tuple[str, ...]] = ("note",)

    @property
    def name(self) -> str:
        return f"request.{self.status}"

    target_format: ClassVar[str] = "request:{request}"


@registered
@dataclass(frozen=True)
class RequestStep(AuditEvent):
    """What a soft delete did to the subject dataset, or what an access export read from
    one dataset."""

    names: ClassVar[tuple[str, ...]] = ("request.soft_deleted", "request.exported")
    request: int
    dataset: str
    step: str  # soft_deleted | exported
    rows: int
    done: int
    retained: int
    held: int
    action: str

    @property
    def name(self) -> str:
        return f"request.{self.step}"

    target_format: ClassVar[str] = "request:{request}"


@registered
@dataclass(frozen=True)
class RequestErased(AuditEvent):
    """What one run of an erasure did, every dataset in one entry: per dataset the rows
    found, `done` by this run, retained, held, and the action. One entry per request
    rather than per dataset: entries were most of a bulk erasure's cost (10 datasets, 10
    hashes and rows per subject), and the certificate cites them all the same."""

    names: ClassVar[tuple[str, ...]] = ("request.erased",)
    target_format: ClassVar[str] = "request:{request}"
    request: int
    datasets: dict[str, dict[str, int | str]]


@registered
@dataclass(frozen=True)
class KeysShredded(AuditEvent):
    """Subjects' data keys destroyed: their encrypted fields are unreadable everywhere."""

    names: ClassVar[tuple[str, ...]] = ("keys.shredded",)
    target_format: ClassVar[str] = "{scope}"
    scope: str  # request:ID, or dataset:NAME for retention
    subject_kind: str
    keys: int


@registered
@dataclass(frozen=True)
class KeysRotated(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("keys.rotated",)
    target_format: ClassVar[str] = "keys"
    kek: str
    rewrapped: int


@registered
@dataclass(frozen=True)
class ApiCall(AuditEvent):
    """One HTTP API call: who (key id, and the admin behind an impersonation), from where,
    what, on what, and how it ended. Never a body, a query string or a secret."""

    names: ClassVar[tuple[str, ...]] = ("api.call",)
    target_format: ClassVar[str] = "{resource}"
    key: str  # key id, or "-" when no valid key was given
    workspace: str
    role: str
    impersonator: str | None
    ip: str
    method: str
    action: str  # the operation, e.g. "requests.open"
    resource: str  # e.g. "request:12", "workspace:acme", "runs"
    status: int


@registered
@dataclass(frozen=True)
class ApiKeyCreated(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("api.key.created",)
    target_format: ClassVar[str] = "key:{key}"
    key: str
    role: str
    workspace: str
    expires_at: str | None
    impersonator: str | None
    reason_text: str


@registered
@dataclass(frozen=True)
class ApiKeyRevoked(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("api.key.revoked",)
    target_format: ClassVar[str] = "key:{key}"
    key: str


@registered
@dataclass(frozen=True)
class RetentionPeriodSet(AuditEvent):
    """A workspace chose its retention period for a dataset (None: back to the default)."""

    names: ClassVar[tuple[str, ...]] = ("workspace.retention",)
    target_format: ClassVar[str] = "workspace:{workspace}"
    workspace: str
    dataset: str
    keep: str | None


@registered
@dataclass(frozen=True)
class WorkspaceRegionSet(AuditEvent):
    names: ClassVar[tuple[str, ...]] = ("workspace.region",)
    target_format: ClassVar[str] = "workspace:{workspace}"
    workspace: str
    region: str | None


@registered
@dataclass(frozen=True)
class TransferRecorded(AuditEvent):
    """A workspace's dataset authorised to be held outside the workspace's region."""

    names: ClassVar[tuple[str, ...]] = ("transfer.recorded",)
    target_format: ClassVar[str] = "transfer:{transfer}"
    transfer: int
    workspace: str
    dataset: str
    to_region: str
    until: str | None
    reason_text: str


@registered
@dataclass(frozen=True)
class TransferRevoked(AuditEvent):
    """An authorisation withdrawn: `check` reports the data again if it is still there."""

    names: ClassVar[tuple[str, ...]] = ("transfer.revoked",)
    target_format: ClassVar[str] = "transfer:{transfer}"
    transfer: int
    workspace: str
    dataset: str
    to_region: str
