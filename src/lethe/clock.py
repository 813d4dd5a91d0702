"""The one clock: `--now` must reach every component through this object.

Nothing else in lethe calls `datetime.now()`, so a replay with a fixed time is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from lethe.errors import UsageError


@dataclass(frozen=True)
class Clock:
    """A wall clock, or a frozen instant when `fixed` is given."""

    fixed: datetime | None = None

    def now(self) -> datetime:
        return self.fixed if self.fixed is not None else datetime.now(UTC)


def parse_instant(text: str, path: str = "--now") -> datetime:
    """Parse an ISO-8601 instant; a naive one is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid ISO-8601 time {text!r}", path=path) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def clock_at(text: str | None) -> Clock:
    return Clock(parse_instant(text)) if text else Clock()
