"""The policy's organization-wide settings: schedules, keys, audit, residency, classes.

Apart from `lethe.policy.model` (datasets, stores, subjects, rules) so neither grows past
what one reads at once; the model re-exports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lethe.policy.base import DurationField, Strict, identifier
from lethe.policy.durations import Duration


class Schedule(Strict):
    cron: str
    datasets: list[str] | Literal["all"] = "all"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        from croniter import croniter  # with its dateutil, only for a policy with schedules

        if not croniter.is_valid(cron):
            raise ValueError(f"invalid cron expression {cron!r} (five fields: minute hour "
                             "day-of-month month day-of-week)")
        return cron


class EncryptionPolicy(Strict):
    """Where the local key-encryption key lives (LETHE_KEK in the environment wins)."""

    kek_file: str = ".lethe/kek.json"


class AuditPolicy(Strict):
    """Where the signing key lives, how often to checkpoint, how long entries are kept."""

    key: str = ".lethe/organization.key"
    checkpoint_every: int = Field(default=1000, ge=1, strict=True)  # "5" is not a number
    retention: DurationField = Duration(7, "y")
    # where every signed checkpoint also goes: file:///path, s3://bucket/prefix?…, stdout
    witness: str | None = None


class Residency(Strict):
    """Where each workspace's home region is declared: one row per workspace in `dataset`,
    the workspace id in `id` (default: the dataset's key), its region in `region`.

    A region set through the API (`lethe_workspaces`) overrides the declared one;
    `default` is the region of a workspace that has neither.
    """

    dataset: str
    region: str
    id: str | None = None
    default: str | None = None

    @model_validator(mode="after")
    def _columns(self) -> Residency:
        identifier(self.region, "column")
        if self.id is not None:
            identifier(self.id, "column")
        return self


class Termination(Strict):
    """How a workspace's termination goes (`lethe request open erasure --workspace ID`):
    every row, object, Redis key and archived row of the workspace is erased within
    `within` of the request; for the first `recover_for` nothing is touched and the
    request can still be cancelled (rejected)."""

    within: DurationField = Duration(90, "d")
    recover_for: DurationField = Duration(0, "d")

    @model_validator(mode="after")
    def _fits(self) -> Termination:
        if self.within.forever or not self.within.amount:
            raise ValueError("within: a termination is due a finite, non-zero "
                             "time after it is requested")
        if self.recover_for.forever:
            raise ValueError("recover_for: the recovery window cannot be forever")
        for start in (datetime(2001, 3, 1), datetime(2000, 3, 1), datetime(2000, 8, 1)):
            if (self.recover_for.before(start) or start) > (self.within.before(start) or start):
                continue  # in every month length: `mo`/`y` against `d`/`w` can reverse
            raise ValueError("recover_for: the recovery window must end before "
                             "the termination is due (`within`)")
        return self


def untraceable_archives(datasets: Mapping[str, Any]) -> list[str]:
    """Datasets a workspace's termination reaches (a `workspace:` column, or below one
    through `belongs_to`) whose archived rows it could not find: archived, with no
    `workspace:` column of their own to find them by."""
    reached = {name for name, ds in datasets.items() if ds.workspace}
    grew = True
    while grew:
        below = {name for name, ds in datasets.items()
                 if name not in reached and reached & set(ds.belongs_to)}
        reached |= below
        grew = bool(below)
    return sorted(n for n in reached if datasets[n].archive_targets and not datasets[n].workspace)


class ClassPolicy(Strict):
    """What every declared field of a class must be: `encrypted: true` on `pii` makes
    each field classified pii (its own class, else its dataset's) an encrypted one."""

    encrypted: bool = False


NEEDS_RESTORE = ("GLACIER", "DEEP_ARCHIVE")  # not readable until a RestoreObject finishes


class ArchiveStorage(Strict):
    """How an S3 archive store writes its chunks and manifests: the storage class and
    server-side encryption S3 applies to each object. A GLACIER or DEEP_ARCHIVE chunk is
    written readable, verified, then moved to its class in place (CopyObject); its
    manifest and marker stay readable, so lethe finds which chunks hold whose rows
    without a retrieval. Reading such a chunk back (an erasure rewriting it, `archive
    restore`) first asks S3 to restore it (`restore_tier`, a copy readable for
    `restore_days`) and goes on in a later run once S3 has (engine.archive)."""

    storage_class: Literal["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                           "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"] | None = None
    sse: Literal["AES256", "aws:kms"] | None = None
    kms_key_id: str | None = None
    restore_tier: Literal["Expedited", "Standard", "Bulk"] = "Standard"
    restore_days: int = Field(default=7, ge=1, le=365)

    @model_validator(mode="after")
    def _readable(self) -> ArchiveStorage:
        if self.storage_class == "DEEP_ARCHIVE" and self.restore_tier == "Expedited":
            raise ValueError("restore_tier: DEEP_ARCHIVE has no Expedited retrieval "
                             "(Standard: within 12 hours, Bulk: within 48)")
        if self.kms_key_id is not None and self.sse != "aws:kms":
            raise ValueError("kms_key_id goes with sse: aws:kms")
        return self

    @property
    def cold(self) -> bool:
        """Must a chunk be restored before it can be read?"""
        return self.storage_class in NEEDS_RESTORE

    def encryption_args(self) -> dict[str, str]:
        found = {"ServerSideEncryption": self.sse, "SSEKMSKeyId": self.kms_key_id}
        return {k: v for k, v in found.items() if v is not None}

    def put_args(self) -> dict[str, str]:
        """The S3 PutObject parameters every write carries: a cold class is not among
        them (a chunk moves there once verified; manifests and markers stay readable)."""
        cls = {} if self.storage_class is None or self.cold else \
            {"StorageClass": self.storage_class}
        return cls | self.encryption_args()
