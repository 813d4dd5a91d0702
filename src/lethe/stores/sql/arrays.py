"""A float array bound to a PostgreSQL statement in the binary protocol.

A retention rule with periods from data binds the periods of every parent it read once
(`Compiler._known`), 10,000 of them or more, to every batch. As text, the server parsed
them again each batch (~0.9 ms for 10,000 floats: each one through strtod); as one
Python list, psycopg dumped each float each batch (~14 ms). Packed once into
PostgreSQL's binary `float8[]` form and handed to psycopg as is, a batch pays only
for receiving the bytes (~0.1 ms).
"""

from __future__ import annotations

import struct
from functools import cache
from typing import Any

import sqlalchemy as sa

FLOAT8 = 701  # PostgreSQL's type oids
FLOAT8_ARRAY = 1022


class Float8Array:
    """Floats packed as PostgreSQL's binary `float8[]`: dimensions, no NULLs, values."""

    __slots__ = ("data", "values")

    def __init__(self, values: tuple[float, ...]) -> None:
        self.values = values
        self.data = struct.pack("!iiIii", 1, 0, FLOAT8, len(values), 1) + b"".join(
            struct.pack("!id", 8, float(v)) for v in values)


class Float8ArrayType(sa.types.Indexable, sa.types.UserDefinedType[Float8Array]):
    """The bound value's type: passed to the driver untouched (psycopg dumps it with
    the dumper `register_dumper` installs), subscripted as SQLAlchemy's ARRAY is."""

    cache_ok = True
    comparator_factory = sa.ARRAY.Comparator  # what `value[i]` needs of the type:
    item_type = sa.Float()
    dimensions = None
    zero_indexes = False

    def get_col_spec(self, **_kw: Any) -> str:
        return "FLOAT8[]"

    def bind_processor(self, dialect: Any) -> None:
        return None


_PACKED: dict[int, Float8Array] = {}  # id(values) -> packed (see `packed`)


def packed(values: tuple[float, ...]) -> Float8Array:
    """The values packed once per tuple (each batch binds them again; keyed by identity:
    hashing 10,000 floats a batch cost a millisecond)."""
    found = _PACKED.get(id(values))
    if found is None or found.values is not values:
        if len(_PACKED) >= 8:
            _PACKED.clear()
        found = _PACKED[id(values)] = Float8Array(values)
    return found


def register_dumper(dbapi_connection: Any) -> None:
    """Teach a psycopg connection to send a `Float8Array` as binary `float8[]`."""
    dbapi_connection.adapters.register_dumper(Float8Array, _dumper())


@cache
def _dumper() -> type:
    """The dumper class, defined once (psycopg is imported only where lethe connects to
    PostgreSQL with it)."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    class Float8ArrayDumper(Dumper):
        format = Format.BINARY
        oid = FLOAT8_ARRAY

        def dump(self, obj: Float8Array) -> bytes:
            return obj.data

    return Float8ArrayDumper
