"""Retention periods that come from data: `keep: {from: workspaces.message_retention, ...}`.

A customer sets its own period in a settings column of a row its data belongs to (a
workspace, an account); the organization bounds it. Each row's period is that setting,
in `unit`s, kept within `min`..`max`; `default` where the row has no parent, the parent
has no setting, or the setting is not a positive finite number (so a bad value never
means "keep forever" or "delete now"). The engine evaluates it inside the store's SQL,
one correlated lookup of the parent per row (or, on PostgreSQL, the periods read when
the run starts, by array subscript), with no per-row Python (lethe.stores.sql).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from lethe.policy.base import DurationField, Strict, identifier
from lethe.policy.durations import Duration

UNIT_SECONDS = {"days": 86_400, "hours": 3_600, "seconds": 1}
# Months and years are calendar units (`1mo` is 28 to 31 days): the bounds must be in
# order whatever month a run falls in, so they are compared from instants whose month
# before is each length, in a leap year and not.
_REFERENCES = (datetime(2001, 3, 1), datetime(2000, 3, 1), datetime(2000, 5, 1),
               datetime(2000, 8, 1), datetime(2001, 1, 1))


def seconds(duration: Duration, now: datetime) -> int:
    """How many seconds `duration` reaches back from `now` (a finite duration)."""
    start = duration.before(now)
    assert start is not None, "a period from data is never forever"
    return int((now - start).total_seconds())


class KeepFrom(Strict):
    """`keep:` read per row from a parent's settings column (see the module)."""

    # DATASET.COLUMN: a dataset this one belongs_to; none: each workspace's period is set
    # through the API (`PUT /v1/workspaces/{id}/retention/{dataset}`)
    from_: str | None = Field(default=None, alias="from")
    default: DurationField
    min: DurationField = Duration(1, "d")
    max: DurationField
    unit: Literal["days", "hours", "seconds"] = "days"

    @model_validator(mode="after")
    def _bounds(self) -> KeepFrom:
        if self.from_ is not None:
            dataset, _, column = self.from_.partition(".")
            if not column:
                raise ValueError("`from` names a dataset and its column: DATASET.COLUMN")
            identifier(dataset, "dataset")
            identifier(column, "column")
        for name in ("default", "min", "max"):
            if getattr(self, name).forever:
                raise ValueError(f"`{name}` of a period from data cannot be forever")
        for reference in _REFERENCES:
            low, default, high = (seconds(d, reference)
                                  for d in (self.min, self.default, self.max))
            if not 0 < low <= default <= high:
                raise ValueError("need 0 < min <= default <= max in every month (a month "
                                 "is 28 to 31 days: do not mix `mo`/`y` with `d`/`w` "
                                 "where that can reverse them)")
        return self

    @property
    def dataset(self) -> str:
        """The parent whose column holds the period ("" when the API sets it)."""
        return (self.from_ or "").partition(".")[0]

    @property
    def column(self) -> str:
        return (self.from_ or "").partition(".")[2]

    def allows(self, keep: Duration, now: datetime) -> bool:
        """Is `keep` within the bounds (what the API accepts as a workspace's period)?"""
        return not keep.forever and \
            seconds(self.min, now) <= seconds(keep, now) <= seconds(self.max, now)

    def clamped(self, keep: Duration, now: datetime) -> Duration:
        """`keep` within the bounds (a period chosen before the bounds last changed)."""
        if keep.forever or seconds(keep, now) > seconds(self.max, now):
            return self.max
        return self.min if seconds(keep, now) < seconds(self.min, now) else keep

    def __str__(self) -> str:
        source = f"{self.from_} in {self.unit}" if self.from_ else "set per workspace"
        return f"{source} ({self.min} to {self.max}, {self.default} unless set)"


Keep = Duration | KeepFrom


def _kind(value: Any) -> str:
    return "keep:from" if isinstance(value, dict | KeepFrom) else "keep:duration"


# `keep:` in the policy: a duration, or a mapping with `from:` (errors name only the form given)
KeepField = Annotated[
    Annotated[DurationField, Tag("keep:duration")] | Annotated[KeepFrom, Tag("keep:from")],
    Discriminator(_kind)]


def shortest(keep: Keep) -> Duration:
    """The shortest a rule keeps any row."""
    return keep.min if isinstance(keep, KeepFrom) else keep


def longest(keep: Keep) -> Duration:
    """The longest a rule keeps any row: what may be dropped wholesale (a partition)
    only past it, and what a lag is measured against (a lower bound on the lag)."""
    return keep.max if isinstance(keep, KeepFrom) else keep


def keeps_a_while(keep: Keep) -> bool:
    """Not forever: the rule's rows age by a clock."""
    return isinstance(keep, KeepFrom) or not keep.forever
