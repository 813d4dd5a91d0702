"""The policy's organization-wide settings: schedules, keys, audit, residency, classes.

Apart from `lethe.policy.model` (datasets, stores, subjects, rules) so neither grows past
what one reads at once; the model re-exports them.
"""

from __future__ import annotations

from typing import Literal

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


class ClassPolicy(Strict):
    """What every declared field of a class must be: `encrypted: true` on `pii` makes
    each field classified pii (its own class, else its dataset's) an encrypted one."""

    encrypted: bool = False
