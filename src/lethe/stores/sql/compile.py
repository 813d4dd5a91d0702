"""Conditions into SQL: the engine's `Condition` tree as a SQLAlchemy expression.

This is where the store-neutral vocabulary of `lethe.stores.base` meets a dialect:
values are bound in the column's type (`values.coerce`), a long `IN` list becomes one
parameter (an array on PostgreSQL, JSON on SQLite), and time comparisons go by instant,
with integer time columns judged once to count seconds or milliseconds. Every leaf
compiles two-valued (never SQL NULL), so `Not` of it is safe.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from lethe.stores.base import (
    And,
    Condition,
    Const,
    Differs,
    Eq,
    Exists,
    In,
    IsNull,
    Not,
    NotLike,
    Older,
    Or,
)
from lethe.stores.sql.reflect import Schema
from lethe.stores.sql.values import (
    MILLIS_THRESHOLD,
    UNCOERCIBLE,
    coerce,
    coerce_each,
    is_numeric,
    older,
)


def glob_of(pattern: str) -> str:
    """A LIKE pattern as a SQLite GLOB pattern (`%` -> `*`, `_` -> `?`, GLOB's own
    wildcards taken literally): the same match, case-sensitive."""
    literal = {"*": "[*]", "?": "[?]", "[": "[[]"}
    return "".join("*" if ch == "%" else "?" if ch == "_" else literal.get(ch, ch)
                   for ch in pattern)


ARRAY_AFTER = 16  # longer IN lists go as one parameter: an array (PostgreSQL), JSON (SQLite)


class Compiler(Schema):
    """Condition trees compiled against the reflected tables of this store."""

    def compile(self, cond: Condition, table_name: str,
                table: sa.FromClause | None = None) -> sa.ColumnElement[bool]:
        """Turn a condition tree into a SQLAlchemy expression on `table` (bound values)."""
        t = table if table is not None else self.table(table_name)

        def col(name: str) -> sa.ColumnElement[Any]:
            return self.column(t, name, table_name)

        match cond:
            case Const(value):
                return sa.true() if value else sa.false()
            case Eq(column, value):
                c = col(column)
                if value is None:
                    return c.is_(None)
                bound = coerce(c, value, self.dialect)
                return sa.false() if bound is UNCOERCIBLE else sa.and_(c.is_not(None), c == bound)
            case In(column, values):
                c = col(column)
                bound_values = coerce_each(c, values, self.dialect)
                parts = []
                if bound_values:
                    parts.append(sa.and_(c.is_not(None), self._in(c, bound_values)))
                if any(v is None for v in values):
                    parts.append(c.is_(None))
                return sa.or_(*parts) if parts else sa.false()
            case IsNull(column):
                return col(column).is_(None)
            case Differs(column, value):
                c = col(column)
                bound = coerce(c, value, self.dialect)
                if bound is UNCOERCIBLE:
                    return c.is_not(None)
                return sa.and_(c.is_not(None), c != bound)
            case NotLike(column, pattern):
                c = col(column)
                text = sa.cast(c, sa.String)
                # SQLite's LIKE ignores ASCII case; GLOB does not, as PostgreSQL's LIKE
                matches = text.op("GLOB", is_comparison=True)(glob_of(pattern)) \
                    if self.dialect == "sqlite" \
                    else text.like(pattern)
                return sa.and_(c.is_not(None), sa.not_(matches))
            case Older(column, cutoff):
                c = col(column)
                return sa.and_(c.is_not(None), self._older(c, cutoff))
            case And(parts):
                return sa.and_(*(self.compile(p, table_name, t) for p in parts))
            case Or(parts):
                return sa.or_(*(self.compile(p, table_name, t) for p in parts))
            case Not(part):
                return sa.not_(self.compile(part, table_name, t))
            case Exists(other, inner, outer, where, _store):
                o = self.table(other).alias()
                link = self.column(o, inner, other) == col(outer)
                return sa.exists().where(link, self.compile(where, other, o))
        raise TypeError(f"unknown condition {type(cond).__name__}")

    def _in(self, c: sa.ColumnElement[Any], values: list[Any]) -> sa.ColumnElement[bool]:
        """`IN (...)`; on PostgreSQL a long list is one array parameter (`= ANY(:a)`), so
        the driver neither rewrites nor re-plans a statement per list length."""
        if self.dialect == "postgresql" and len(values) > ARRAY_AFTER:
            from sqlalchemy.dialects import postgresql  # loaded with a PostgreSQL engine

            if all(type(v) in (int, str) for v in values):
                listed = sa.func.jsonb_array_elements_text(
                    sa.bindparam(None, values, postgresql.JSONB))
                return c.in_(sa.select(sa.cast(listed.table_valued("value").c.value, c.type)))
            return c == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(c.type)))
        if self.dialect == "sqlite" and len(values) > ARRAY_AFTER and all(
                type(v) in (int, str) for v in values):
            # One JSON parameter read as a table (SQLite's bound array): a list of
            # thousands of held keys neither hits the variable limit nor deepens the
            # expression tree, and SQLite builds one lookup index for the IN.
            listed = sa.func.json_each(sa.bindparam(None, json.dumps(values), sa.String))
            return c.in_(sa.select(listed.table_valued("value").c.value))
        return c.in_(values)

    def _older(self, c: sa.ColumnElement[Any], cutoff: datetime) -> sa.ColumnElement[bool]:
        # SQLite decides seconds or milliseconds per value, in SQL
        millis = self.dialect != "sqlite" and self._in_millis(c)
        return older(c, cutoff, self.dialect, millis=millis)

    def _in_millis(self, c: sa.ColumnElement[Any]) -> bool:
        """Does this integer time column count milliseconds? Judged once from its values."""
        if not is_numeric(c) or not isinstance(c, sa.Column):
            return False
        name = (c.table.name, c.name)
        if name not in self._millis:
            with self._errors("reading a time column"), self.engine.connect() as conn:
                top = conn.execute(sa.select(sa.func.max(c))).scalar()
            self._millis[name] = top is not None and abs(top) > MILLIS_THRESHOLD
        return self._millis[name]
