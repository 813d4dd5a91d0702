"""Durations: fixed units are exact, months and years follow the calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lethe.policy.durations import Duration, parse_duration


@pytest.mark.parametrize(("text", "delta"), [
    ("10m", timedelta(minutes=10)), ("24h", timedelta(hours=24)),
    ("30d", timedelta(days=30)), ("2w", timedelta(days=14)),
])
def test_fixed_units(text: str, delta: timedelta) -> None:
    now = datetime(2026, 3, 31, 12, tzinfo=UTC)
    assert parse_duration(text).before(now) == now - delta


@pytest.mark.parametrize(("text", "now", "expected"), [
    ("1mo", datetime(2026, 3, 31, tzinfo=UTC), datetime(2026, 2, 28, tzinfo=UTC)),
    ("1mo", datetime(2024, 3, 31, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC)),
    ("12mo", datetime(2026, 1, 15, tzinfo=UTC), datetime(2025, 1, 15, tzinfo=UTC)),
    ("7y", datetime(2028, 2, 29, tzinfo=UTC), datetime(2021, 2, 28, tzinfo=UTC)),
    ("13mo", datetime(2026, 1, 31, 8, 30, tzinfo=UTC), datetime(2024, 12, 31, 8, 30, tzinfo=UTC)),
])
def test_calendar_units(text: str, now: datetime, expected: datetime) -> None:
    assert parse_duration(text).before(now) == expected


def test_forever_is_never_old_enough() -> None:
    assert parse_duration("forever").before(datetime.now(UTC)) is None
    assert str(parse_duration("forever")) == "forever"


@pytest.mark.parametrize("bad", ["30 dayz", "", "30", "d30", "-5d", "1.5d", 30, None, "3mon"])
def test_invalid_durations_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.just(UTC)),
       st.integers(min_value=0, max_value=600))
def test_months_land_in_the_right_month_and_never_overshoot(now: datetime, months: int) -> None:
    cutoff = Duration(months, "mo").before(now)
    assert cutoff is not None
    assert (now.year * 12 + now.month) - (cutoff.year * 12 + cutoff.month) == months
    assert cutoff.day <= now.day and cutoff.time() == now.time()
    assert cutoff <= now


@given(st.integers(min_value=0, max_value=50))
def test_years_are_twelve_months(years: int) -> None:
    now = datetime(2030, 8, 31, 23, 59, tzinfo=UTC)
    assert Duration(years, "y").before(now) == Duration(years * 12, "mo").before(now)
