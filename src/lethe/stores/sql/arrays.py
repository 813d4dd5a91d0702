"""Arrays bound to a PostgreSQL statement in the binary protocol.

A retention rule with periods from data binds the periods of every parent it read once
(`Compiler._known`), 10,000 of them or more, to every batch. As text, the server parsed
them again each batch (~0.9 ms for 10,000 floats: each one through strtod); as one
Python list, psycopg dumped each float each batch (~14 ms). Packed once into
PostgreSQL's binary array form and handed to psycopg as is, a batch pays only for
receiving the bytes (~0.1 ms).

Two kinds: `float8[]` (periods, in seconds) and `timestamptz[]` (each parent's cutoff,
for a `timestamptz` time column: the row's time compares with its cutoff directly,
with no `to_timestamp(now - period)` per row; measured ~9 ns a row of ~41 the period
costs over a fixed cutoff).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")
FLOAT8 = 701  # PostgreSQL's type oids
FLOAT8_ARRAY = 1022
TIMESTAMPTZ = 1184
TIMESTAMPTZ_ARRAY = 1185
# a binary timestamptz: microseconds since 2000-01-01 UTC; 'infinity' is the largest int64
POSTGRES_EPOCH = 946_684_800  # 2000-01-01 in Unix seconds
INFINITY = 2**63 - 1


def _array(element_oid: int, items: bytes, count: int) -> bytes:
    """A one-dimensional binary array with no NULLs: header, then each length-prefixed item."""
    return struct.pack("!iiIii", 1, 0, element_oid, count, 1) + items


class Float8Array:
    """Floats packed as PostgreSQL's binary `float8[]`."""

    __slots__ = ("data",)

    def __init__(self, values: tuple[float, ...]) -> None:
        self.data = _array(FLOAT8, b"".join(struct.pack("!id", 8, float(v)) for v in values),
                           len(values))


class TimestamptzArray:
    """Instants packed as PostgreSQL's binary `timestamptz[]` (microseconds)."""

    __slots__ = ("data",)

    def __init__(self, micros: list[int]) -> None:
        self.data = _array(TIMESTAMPTZ, b"".join(struct.pack("!iq", 8, m) for m in micros),
                           len(micros))


class _BinaryArrayType(sa.types.Indexable, sa.types.UserDefinedType[Any]):
    """A bound binary array's type: passed to the driver untouched (psycopg dumps it with
    the dumper `register_dumper` installs), subscripted as SQLAlchemy's ARRAY is."""

    cache_ok = True
    comparator_factory = sa.ARRAY.Comparator  # what `value[i]` needs of the type:
    dimensions = None
    zero_indexes = False
    spec = ""
    item_type: Any = None

    def get_col_spec(self, **_kw: Any) -> str:
        return self.spec

    def bind_processor(self, dialect: Any) -> None:
        return None


class Float8ArrayType(_BinaryArrayType):
    cache_ok = True  # (SQLAlchemy reads it from each class itself)
    spec = "FLOAT8[]"
    item_type = sa.Float()


class TimestamptzArrayType(_BinaryArrayType):
    cache_ok = True
    spec = "TIMESTAMPTZ[]"
    item_type = sa.DateTime(timezone=True)


_ONCE: dict[tuple[Any, ...], tuple[tuple[float, ...], Any]] = {}  # see `once_per`


def once_per(key: tuple[Any, ...], values: tuple[float, ...], make: Callable[[], T]) -> T:
    """`make()`, made once per tuple of periods and kept while that tuple is (each batch
    binds what is made from it again): keyed by `key`, which names the tuple by identity
    (`id(values)`), as hashing 10,000 floats a batch cost a millisecond."""
    found = _ONCE.get(key)
    if found is None or found[0] is not values:
        if len(_ONCE) >= 8:
            _ONCE.clear()
        found = _ONCE[key] = (values, make())
    made: T = found[1]
    return made


def packed(values: tuple[float, ...]) -> Float8Array:
    """The periods as one binary `float8[]`."""
    return once_per(("float8", id(values)), values, lambda: Float8Array(values))


def packed_cutoffs(now_epoch: float, periods: tuple[float, ...]) -> TimestamptzArray:
    """`now_epoch - period` for each period as one binary `timestamptz[]`, each instant
    exactly as PostgreSQL's `to_timestamp(now_epoch - period)` gives it (the same float
    subtraction, then rounded to the microsecond half to even, as its `rint` does); a
    0 period (no parent then) is 'infinity'."""

    def micros() -> list[int]:
        return [round(((now_epoch - p) - POSTGRES_EPOCH) * 1_000_000.0) if p else INFINITY
                for p in periods]

    return once_per(("timestamptz", id(periods), now_epoch), periods,
                    lambda: TimestamptzArray(micros()))


def register_dumper(dbapi_connection: Any) -> None:
    """Teach a psycopg connection to send the packed arrays as binary arrays."""
    for kind, dumper in _dumpers().items():
        dbapi_connection.adapters.register_dumper(kind, dumper)


@cache
def _dumpers() -> dict[type, type]:
    """The dumper classes, defined once (psycopg is imported only where lethe connects to
    PostgreSQL with it)."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    class Float8ArrayDumper(Dumper):
        format = Format.BINARY
        oid = FLOAT8_ARRAY

        def dump(self, obj: Float8Array) -> bytes:
            return obj.data

    class TimestamptzArrayDumper(Dumper):
        format = Format.BINARY
        oid = TIMESTAMPTZ_ARRAY

        def dump(self, obj: TimestamptzArray) -> bytes:
            return obj.data

    return {Float8Array: Float8ArrayDumper, TimestamptzArray: TimestamptzArrayDumper}
