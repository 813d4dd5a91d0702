"""Binding condition values in a column's type: the IN-list fast path must agree with
value-by-value coercion, or a group erasure would match different rows than a single one."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from lethe.stores.sql.values import UNCOERCIBLE, coerce, coerce_each

TABLE = sa.Table("t", sa.MetaData(), sa.Column("small", sa.SmallInteger),
                 sa.Column("big", sa.BigInteger), sa.Column("name", sa.String))


def one_by_one(c: sa.ColumnElement[Any], values: list[Any], dialect: str) -> list[Any]:
    return [b for v in values if v is not None
            and (b := coerce(c, v, dialect)) is not UNCOERCIBLE]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@pytest.mark.parametrize("values", [
    [1, 2, 3, 2**15, -(2**15) - 1, 2**63, None],  # plain ints: the fast path, bounds kept
    [1, "2", " 3 ", "x", 4.0, 4.5, True, None],  # anything else: value by value
])
@pytest.mark.parametrize("column", ["small", "big", "name"])
def test_coerce_each_agrees_with_coerce(column: str, values: list[Any], dialect: str) -> None:
    c = TABLE.c[column]
    assert coerce_each(c, values, dialect) == one_by_one(c, values, dialect)


def test_integer_bounds_follow_the_column_on_postgresql() -> None:
    assert coerce_each(TABLE.c.small, [2**15 - 1, 2**15], "postgresql") == [2**15 - 1]
    assert coerce_each(TABLE.c.big, [2**15, 2**63], "postgresql") == [2**15]
    assert coerce_each(TABLE.c.small, [2**15], "sqlite") == [2**15]  # SQLite ints are 64-bit
