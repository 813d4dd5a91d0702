"""Retention durations: `24h`, `10m`, `30d`, `2w`, `12mo`, `7y`, `forever`.

Months and years are calendar units: 1mo before 31 March is 28/29 February, because
a privacy promise of "12 months" means the calendar, not 360 days.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

# ASCII digits only, nothing around or between: Arabic-Indic or full-width digits and
# `'30 d'` are not durations.
_PATTERN = re.compile(r"([0-9]{1,9})(mo|m|h|d|w|y)", re.ASCII)
_FIXED = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
          "w": timedelta(weeks=1)}


@dataclass(frozen=True)
class Duration:
    """A length of time; `amount is None` means forever."""

    amount: int | None
    unit: str = "d"

    @property
    def forever(self) -> bool:
        return self.amount is None

    def before(self, instant: datetime) -> datetime | None:
        """The instant this long before `instant`; None for forever (nothing is ever old enough)."""
        if self.amount is None:
            return None
        try:
            if self.unit in _FIXED:
                return instant - self.amount * _FIXED[self.unit]
            return subtract_months(instant, self.amount * (12 if self.unit == "y" else 1))
        except (OverflowError, ValueError):  # before year 1: nothing can be that old
            return datetime.min.replace(tzinfo=instant.tzinfo)

    def after(self, instant: datetime) -> datetime | None:
        """The instant this long after `instant` (when a row of that time is old enough);
        None for forever, or past the calendar's end."""
        if self.amount is None:
            return None
        try:
            if self.unit in _FIXED:
                return instant + self.amount * _FIXED[self.unit]
            return subtract_months(instant, -self.amount * (12 if self.unit == "y" else 1))
        except (OverflowError, ValueError):
            return None

    def __str__(self) -> str:
        return "forever" if self.amount is None else f"{self.amount}{self.unit}"


def subtract_months(instant: datetime, months: int) -> datetime:
    total = instant.year * 12 + (instant.month - 1) - months
    year, month = divmod(total, 12)
    month += 1
    day = min(instant.day, calendar.monthrange(year, month)[1])
    return instant.replace(year=year, month=month, day=day)


def parse_duration(text: object) -> Duration:
    """Parse a duration; raises ValueError with the offending text for the policy loader."""
    if isinstance(text, Duration):
        return text
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r} (use e.g. 24h, 30d, 12mo, 7y or forever)")
    if text == "forever":
        return Duration(None)
    match = _PATTERN.fullmatch(text)
    if not match:
        raise ValueError(f"invalid duration {text!r} (use e.g. 24h, 30d, 12mo, 7y or forever)")
    return Duration(int(match.group(1)), match.group(2))
