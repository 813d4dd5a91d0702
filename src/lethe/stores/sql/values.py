"""Values meeting columns: binding policy values in a column's type, and reading times.

A policy says `status: 1`, a hold names a subject by `42` or by an email; a column may
be an integer, a UUID, an enum, text. A value that cannot be of the column's type
simply matches nothing — comparing an integer column with 'ada@…' must not be an
error, and must not be coerced into something that matches.
"""

from __future__ import annotations

import base64
import functools
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

UNCOERCIBLE = object()
MILLIS_THRESHOLD = 100_000_000_000  # epoch values above this are milliseconds (year 5138+ in s)
_INT_BOUNDS = ((sa.SmallInteger, 2**15), (sa.BigInteger, 2**63), (sa.Integer, 2**31))
# The one spelling of an integer: ASCII digits, no sign but '-', no leading zero, no
# separators or spaces (Python's int() takes '٤٢', '4_2', '+42', ' 42' and '0042').
INTEGER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)", re.ASCII)
_DECIMAL_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INTEGER_TYPE = re.compile(r"((BIG|SMALL|TINY|MEDIUM)?INT(EGER)?|INT[248]|(BIG|SMALL)?SERIAL)\b")
_DECIMAL_TYPE = re.compile(r"(NUMERIC|DECIMAL|REAL|FLOAT|DOUBLE)\b")


def not_canonical(type_name: str, text: str) -> str | None:
    """Why `text` is not the canonical spelling of a value of a column of this reflected
    type (None when it is). Identities must name one subject exactly: text is taken as
    it is, an integer only in its one spelling, a UUID only in its standard form. Never
    says what the text was."""
    if _CONTROL.search(text):
        return "holds a control character"
    kind = type_name.upper().lstrip()
    if _INTEGER_TYPE.match(kind):
        if not INTEGER_TEXT.fullmatch(text) or not -2**63 <= int(text) < 2**63:
            return "is not an integer written plainly (digits, an optional '-', no " \
                   "leading zeros or spaces)"
    elif _DECIMAL_TYPE.match(kind):
        if not _DECIMAL_TEXT.fullmatch(text):
            return "is not a number written plainly"
    elif kind.startswith("UUID"):
        try:
            standard = str(uuid.UUID(text))
        except ValueError:
            standard = ""
        if standard != text.lower():
            return "is not a UUID in its standard form"
    return None


def is_number_type(type_name: str) -> bool:
    """Is a reflected column type (its name, as the catalog keeps it) a number?"""
    kind = type_name.upper().lstrip()
    return bool(_INTEGER_TYPE.match(kind) or _DECIMAL_TYPE.match(kind))


@functools.lru_cache(maxsize=64)
def python_type(ctype: sa.types.TypeEngine[Any]) -> type | None:
    try:
        return ctype.python_type
    except NotImplementedError:
        return None


def coerce(c: sa.ColumnElement[Any], value: Any, dialect: str) -> Any:
    """`value` in the column's type, or UNCOERCIBLE when it cannot be one."""
    ctype = c.type
    if isinstance(ctype, sa.Enum) and ctype.enums:
        return str(value) if str(value) in ctype.enums else UNCOERCIBLE
    ptype = python_type(ctype)
    if ptype is None:
        return value
    if ptype is bool and not isinstance(value, bool):
        return _to_bool(value)
    if ptype is int:
        return _to_int(value, ctype, dialect)
    if isinstance(value, ptype):
        return value
    try:
        if ptype is float:
            return float(value)
        if ptype is str:
            return str(value)
        if ptype is uuid.UUID:
            return uuid.UUID(str(value))
    except (TypeError, ValueError, OverflowError):
        return UNCOERCIBLE
    return value


REMEMBER_FROM = 64  # lists this long are coerced once per (column type, list)
_remembered: dict[tuple[Any, ...], list[Any]] = {}


def coerce_each(c: sa.ColumnElement[Any], values: Sequence[Any], dialect: str) -> list[Any]:
    """The values that can be the column's type, in it (None and the uncoercible
    dropped). A long list (the held identities, a group's subject keys) is compiled
    again for every batch, count and verification of a sweep: it is coerced once and
    remembered (by the column's type object, which lives as long as its reflected
    table). Integer columns take a fast path."""
    if len(values) < REMEMBER_FROM:
        return _coerce_each(c, values, dialect)
    key = (c.type, dialect, tuple(values))
    found = _remembered.get(key)
    if found is None:
        if len(_remembered) >= 32:
            _remembered.clear()
        found = _remembered[key] = _coerce_each(c, values, dialect)
    return found


def _coerce_each(c: sa.ColumnElement[Any], values: Iterable[Any], dialect: str) -> list[Any]:
    listed = [v for v in values if v is not None]
    if python_type(c.type) is int and all(type(v) is int for v in listed):
        bound = _int_bound(c.type, dialect)
        return [v for v in listed if -bound <= v < bound]
    return [b for v in listed if (b := coerce(c, v, dialect)) is not UNCOERCIBLE]


def _int_bound(ctype: sa.types.TypeEngine[Any], dialect: str) -> int:
    return 2**63 if dialect == "sqlite" else \
        next(b for kind, b in _INT_BOUNDS if isinstance(ctype, kind))


def _to_int(value: Any, ctype: sa.types.TypeEngine[Any], dialect: str) -> Any:
    if isinstance(value, bool):
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not value.is_integer():
            return UNCOERCIBLE
        number = int(value)
    else:
        text = str(value)
        if not INTEGER_TEXT.fullmatch(text):
            return UNCOERCIBLE
        number = int(text)
    bound = _int_bound(ctype, dialect)
    return number if -bound <= number < bound else UNCOERCIBLE


def _to_bool(value: Any) -> Any:
    text = str(value).strip().lower()
    if text in {"1", "true", "t", "yes"}:
        return True
    if text in {"0", "false", "f", "no"}:
        return False
    return UNCOERCIBLE


def is_numeric(c: sa.ColumnElement[Any]) -> bool:
    return isinstance(c.type, sa.Integer | sa.Numeric | sa.Float)


def bind_time(c: sa.ColumnElement[Any], instant: datetime, *, millis: bool = False) -> Any:
    """Write a time in the form the column already uses, so `older` reads it back."""
    instant = instant.astimezone(UTC)
    ctype = c.type
    if isinstance(ctype, sa.DateTime):
        return instant if ctype.timezone else instant.replace(tzinfo=None)
    if isinstance(ctype, sa.Date):
        return instant.date()
    if is_numeric(c):
        seconds = instant.timestamp()
        return int(seconds * 1000) if millis else int(seconds)
    return instant.strftime("%Y-%m-%d %H:%M:%S")


def _sqlite_time_text(c: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """ISO text SQLite's date functions can read: '+0000'-style offsets get their colon."""
    no_colon = c.op("GLOB")("*[+-][0-9][0-9][0-9][0-9]")
    fixed = (sa.func.substr(c, 1, sa.func.length(c) - 2) + ":" + sa.func.substr(c, -2))
    return sa.case((no_colon, fixed), else_=c)


def older(c: sa.ColumnElement[Any], cutoff: datetime, dialect: str, *,
          millis: bool = False) -> sa.ColumnElement[bool]:
    """The column holds an instant strictly before `cutoff` (by instant, not by text)."""
    cutoff = cutoff.astimezone(UTC)
    epoch = cutoff.timestamp()
    if dialect == "sqlite":
        return SqliteOlder(c, cutoff)
    return _before(c, cutoff, cutoff.replace(tzinfo=None),
                   int(epoch * 1000) if millis else epoch)


def _before(c: sa.ColumnElement[Any], at: object, wall: object, epoch: object
            ) -> sa.ColumnElement[bool]:
    """The column's value is before an instant, given as the column's type needs it: with
    a time zone (`at`), as UTC wall time (`wall`: naive timestamps and dates) or as an
    epoch number in the column's unit (`epoch`); other types are cast to an instant."""
    ctype = c.type
    if isinstance(ctype, sa.DateTime):
        return c < (at if ctype.timezone else wall)
    if isinstance(ctype, sa.Date):
        return c < wall
    if is_numeric(c):
        return c < epoch
    return sa.cast(c, sa.DateTime(timezone=True)) < at


def older_by(c: sa.ColumnElement[Any], now: datetime, period: sa.ColumnElement[Any],
             dialect: str, *, millis: bool = False) -> sa.ColumnElement[bool]:
    """The column holds an instant more than `period` seconds (computed per row) before
    `now`: `older` with the cutoff computed in SQL."""
    epoch = sa.bindparam(None, now.astimezone(UTC).timestamp(), sa.Float) - period
    if dialect == "sqlite":
        return SqliteOlder(c, epoch=epoch)
    cutoff = sa.func.to_timestamp(epoch)  # timestamptz
    return _before(c, cutoff, sa.func.timezone("UTC", cutoff),
                   epoch * 1000 if millis else epoch)


class SqliteOlder(sa.ColumnElement[bool]):
    """`older` on SQLite, which keeps times as ISO text or epoch numbers whatever the
    column's type: epoch numbers (milliseconds above MILLIS_THRESHOLD) compare with the
    cutoff's epoch; text goes through julianday() (a '+0000'-style offset given its
    colon), and so does the cutoff, so both sides round the same way; NULL and text
    that is no time are not older.

    One construct rendered as SQL text rather than a tree of CASE/func elements: a plan
    builds one per rule and hold condition, and the tree cost ~0.8 ms to build and
    compile against 0.1 ms for this (the demo's `plan` builds ~60)."""

    type = sa.Boolean()
    inherit_cache = True
    # what SQLAlchemy's statement cache keys on (its own class attribute, a list)
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),  # noqa: RUF012
                           ("epoch", InternalTraversal.dp_clauseelement),
                           ("julian", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: sa.ColumnElement[Any], cutoff: datetime | None = None, *,
                 epoch: sa.ColumnElement[Any] | None = None) -> None:
        """Older than `cutoff`, or than the epoch seconds `epoch` computes per row."""
        self.column = column
        self.epoch: sa.ColumnElement[Any]
        self.julian: sa.ColumnElement[Any]
        if epoch is not None:  # julianday() of a number takes it as a julian day
            self.epoch, self.julian = epoch, epoch / 86400.0 + JULIAN_EPOCH
            return
        assert cutoff is not None
        self.epoch = sa.bindparam(None, cutoff.timestamp(), sa.Float)
        self.julian = sa.bindparam(None, cutoff.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                                   sa.String)


@compiles(SqliteOlder)
def _render_sqlite_older(element: SqliteOlder, compiler: Any, **kw: Any) -> str:
    c = compiler.process(element.column, **kw)
    epoch = compiler.process(element.epoch, **kw)
    julian = compiler.process(element.julian, **kw)
    return (f"coalesce(CASE WHEN typeof({c}) IN ('integer', 'real') THEN "
            f"CASE WHEN abs({c}) > {MILLIS_THRESHOLD} THEN {c} / 1000.0 ELSE {c} END "
            f"< {epoch} ELSE julianday(CASE WHEN {c} GLOB '*[+-][0-9][0-9][0-9][0-9]' "
            f"THEN substr({c}, 1, length({c}) - 2) || ':' || substr({c}, -2) ELSE {c} END) "
            f"< julianday({julian}) END, 0)")


JULIAN_EPOCH = 2440587.5  # julianday('1970-01-01')


def earliest(c: sa.ColumnElement[Any], dialect: str, *, millis: bool = False
             ) -> tuple[sa.ColumnElement[Any], Callable[[Any], datetime | None]]:
    """MIN of a time column as an instant, by instant and not by text: the SQL aggregate
    and the function turning its result into a UTC datetime (the oldest row's age)."""
    if dialect == "sqlite":  # ISO text or epoch numbers, as `older` reads them
        numeric = sa.func.typeof(c).in_(["integer", "real"])
        number = sa.type_coerce(c, sa.Float)
        seconds = sa.case((sa.func.abs(number) > MILLIS_THRESHOLD, number / 1000.0),
                          else_=number)
        julian = sa.case((numeric, seconds / 86400.0 + JULIAN_EPOCH),
                         else_=sa.func.julianday(_sqlite_time_text(c)))
        return sa.func.min(julian), _from_julian
    ctype = c.type
    if isinstance(ctype, sa.DateTime | sa.Date):
        return sa.func.min(c), _as_instant
    if is_numeric(c):
        scale = 1000.0 if millis else 1.0
        return sa.func.min(c), lambda v: None if v is None else \
            datetime.fromtimestamp(float(v) / scale, UTC)
    return sa.func.min(sa.cast(c, sa.DateTime(timezone=True))), _as_instant


def _from_julian(value: Any) -> datetime | None:
    if value is None:
        return None
    # julianday() resolves milliseconds; rounding there undoes the float's error
    return datetime.fromtimestamp(round((float(value) - JULIAN_EPOCH) * 86400.0, 3), UTC)


def _as_instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    return None


def from_archive(ctype: sa.types.TypeEngine[Any], value: Any) -> Any:
    """A value read back from an archive chunk (JSON) in the column's Python type."""
    if value is None:
        return None
    ptype = python_type(ctype)
    if ptype is None or isinstance(value, ptype):
        return value
    if ptype is datetime:
        return datetime.fromisoformat(value)
    if ptype is date:
        return date.fromisoformat(value)
    if ptype is time:
        return time.fromisoformat(value)
    if ptype is Decimal:
        return Decimal(str(value))
    if ptype is bytes:
        return base64.b64decode(value)
    if ptype is uuid.UUID:
        return uuid.UUID(str(value))
    return value
