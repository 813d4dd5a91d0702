"""The month a report covers: `YYYY-MM`, as a half-open span of UTC instants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from lethe.errors import UsageError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first instant after the month (exclusive)."""
        year, month = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return datetime(year, month, 1, tzinfo=UTC)

    def days(self) -> list[date]:
        first = self.start.date()
        return [first + timedelta(days=i) for i in range((self.end - self.start).days)]

    def contains(self, instant: datetime | None) -> bool:
        return instant is not None and self.start <= instant < self.end


def parse_month(text: str, path: str = "--month") -> Month:
    """`2026-06` → Month; anything else is a usage error naming `path`."""
    match = _MONTH.match(text.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12 or not 1 <= int(match.group(1)) <= 9998:
        raise UsageError(f"invalid month {text!r} (expected YYYY-MM)", path=path)
    return Month(int(match.group(1)), int(match.group(2)))


def previous_month(now: datetime) -> Month:
    """The last whole month before `now`: what a report run on the 1st is about."""
    return Month(now.year - 1, 12) if now.month == 1 else Month(now.year, now.month - 1)
