"""Conditions into SQL: the engine's `Condition` tree as a SQLAlchemy expression.

This is where the store-neutral vocabulary of `lethe.stores.base` meets a dialect:
values are bound in the column's type (`values.coerce`), a long `IN` list becomes one
parameter (an array on PostgreSQL, JSON on SQLite), and time comparisons go by instant,
with integer time columns judged once to count seconds or milliseconds. Every leaf
compiles two-valued (never SQL NULL), so `Not` of it is safe.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.sql import operators

from lethe.errors import StoreError
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
    NotPositive,
    Older,
    OlderBySetting,
    Or,
)
from lethe.stores.sql.arrays import (
    Float8ArrayType,
    TimestamptzArrayType,
    once_per,
    packed,
    packed_cutoffs,
)
from lethe.stores.sql.reflect import Schema
from lethe.stores.sql.values import (
    MILLIS_THRESHOLD,
    UNCOERCIBLE,
    coerce,
    coerce_each,
    is_numeric,
    older,
    older_by,
)


def glob_of(pattern: str) -> str:
    """A LIKE pattern as a SQLite GLOB pattern (`%` -> `*`, `_` -> `?`, GLOB's own
    wildcards taken literally): the same match, case-sensitive."""
    literal = {"*": "[*]", "?": "[?]", "[": "[[]"}
    return "".join("*" if ch == "%" else "?" if ch == "_" else literal.get(ch, ch)
                   for ch in pattern)


MOST_MISSING_PROBED = 10_000  # keys with no parent a probe for unknown parents lists
MAX_STATEMENTS = 256  # statements kept built per store (`Compiler.shaped`)
ARRAY_AFTER = 16  # longer IN lists go as one parameter: an array (PostgreSQL), JSON (SQLite)


def _missing(known: tuple[float, ...], first: int) -> tuple[int, ...]:
    """The keys with no parent among periods read once (0 in `known`), found once per
    tuple (`arrays.once_per`)."""
    return once_per(("missing", id(known), first), known,
                    lambda: tuple(first + i for i, p in enumerate(known) if not p))


def _json_list(values: list[Any]) -> str:
    """A long `IN` list's JSON text (integers and text only, `_in_mode`): orjson, a tenth
    of the standard library's time (a bulk erasure binds its group's 500 keys in twenty
    statements); an integer past 64 bits, the standard library."""
    try:
        return orjson.dumps(values).decode()
    except TypeError:
        return json.dumps(values)


def _compared(c: sa.ColumnElement[Any], operator: Any, value: Any) -> Any:
    """The type SQLAlchemy binds `value` in when compared with the column (a text value
    against a DATE column on SQLite goes as text, as it is stored)."""
    return c.type.coerce_compared_value(operator, value)


Shape = tuple[Any, ...]  # a condition with its values taken out (see `Compiler.shape`)


class Compiler(Schema):
    """Condition trees compiled against the reflected tables of this store."""

    def compile(self, cond: Condition, table_name: str,
                table: sa.FromClause | None = None) -> sa.ColumnElement[bool]:
        """Turn a condition tree into a SQLAlchemy expression on `table` (bound values)."""
        shape, values = self.shape(cond, table_name)
        return self.build(shape, table_name, table, values)

    def shape(self, cond: Condition, table_name: str,
              prefix: str = "lethe_") -> tuple[Shape, dict[str, Any]]:
        """The condition with its values taken out, and those values, each under the name
        `build` binds it by. Conditions that differ only in their values (another
        subject's key, another list of held keys) have the same shape, so a statement
        built once for a shape is executed again with the next values: SQLAlchemy then
        neither builds nor keys a new statement tree (stores.sql.sweeps, pages). What decides
        the SQL is in the shape: a value that cannot be of its column's type, a NULL, a
        list long enough to go as one array, the type a value is bound in. Times and
        patterns stay in the shape."""
        values: dict[str, Any] = {}

        def slot(value: Any) -> str:
            name = f"{prefix}v{len(values)}"
            values[name] = value
            return name

        def walk(c: Condition, name: str) -> Shape:
            match c:
                case Eq(column, value):
                    if value is None:
                        return ("null", column)
                    c_ = self.column(self.table(name), column, name)
                    bound = coerce(c_, value, self.dialect)
                    return ("false",) if bound is UNCOERCIBLE else \
                        ("eq", column, slot(bound), _compared(c_, operators.eq, bound))
                case In(column, listed):
                    c_ = self.column(self.table(name), column, name)
                    bound_values = coerce_each(c_, listed, self.dialect)
                    mode, bound, compared = self._in_list(c_, bound_values)
                    return ("in", column, slot(bound) if bound_values else None, mode,
                            any(v is None for v in listed), compared)
                case Differs(column, value):
                    c_ = self.column(self.table(name), column, name)
                    bound = coerce(c_, value, self.dialect)
                    return ("not null", column) if bound is UNCOERCIBLE \
                        else ("differs", column, slot(bound), _compared(c_, operators.ne, bound))
                case And(parts):
                    return ("and", *(walk(p, name) for p in parts))
                case Or(parts):
                    return ("or", *(walk(p, name) for p in parts))
                case Not(part):
                    return ("not", walk(part, name))
                case Exists(other, inner, outer, where, _store):
                    return ("exists", other, inner, outer, walk(where, other))
                case Const() | IsNull() | NotLike() | Older() | OlderBySetting() \
                        | NotPositive():
                    return ("as is", c)
            raise TypeError(f"unknown condition {type(c).__name__}")

        return walk(cond, table_name), values

    def prepared(self, kind: tuple[Any, ...], table: str, where: Condition,
                 build: Callable[[sa.ColumnElement[bool]], sa.Executable]
                 ) -> tuple[sa.Executable, dict[str, Any]]:
        """A statement over `where`, built by `build` from the condition's expression once
        per shape (`kind` names the statement), and the values to run it with."""
        shape, values = self.shape(where, table)
        return self.shaped((*kind, table, shape),
                           lambda: build(self.build(shape, table))), values

    def shaped(self, key: tuple[Any, ...], build: Callable[[], sa.Executable]
                ) -> sa.Executable:
        """The statement built for this key, built now if it was not."""
        statement = self._statements.get(key)
        if statement is None:
            if len(self._statements) >= MAX_STATEMENTS:  # shapes seen once (a long
                self._statements.clear()  # list of holds that changed) do not pile up
            statement = self._statements[key] = build()
        return statement

    def build(self, shape: Shape, table_name: str, table: sa.FromClause | None = None,
              values: dict[str, Any] | None = None) -> sa.ColumnElement[bool]:
        """A shape as an expression: with `values`, each bound with its value (unique
        parameters, as any expression of a statement may be); without, as parameters
        named by the shape, their values given when the statement is executed."""
        t = table if table is not None else self.table(table_name)

        def col(name: str) -> sa.ColumnElement[Any]:
            return self.column(t, name, table_name)

        def bind(name: str, type_: Any, *, expanding: bool = False) -> Any:
            if values is None:
                return sa.bindparam(name, type_=type_, expanding=expanding)
            return sa.bindparam(None, values[name], type_=type_, expanding=expanding,
                                unique=True)

        match shape:
            case ("false",):
                return sa.false()
            case ("null", column):
                return col(column).is_(None)
            case ("eq", column, name, compared):
                c = col(column)
                return sa.and_(c.is_not(None), c == bind(name, compared))
            case ("in", column, name, mode, has_null, compared):
                c = col(column)
                either = [] if name is None else \
                    [sa.and_(c.is_not(None), self._in(c, mode, compared, lambda type_, expanding:
                                                      bind(name, type_, expanding=expanding)))]
                if has_null:
                    either.append(c.is_(None))
                return sa.or_(*either) if either else sa.false()
            case ("not null", column):
                return col(column).is_not(None)
            case ("differs", column, name, compared):
                c = col(column)
                return sa.and_(c.is_not(None), c != bind(name, compared))
            case ("and", *parts):
                return sa.and_(*(self.build(p, table_name, t, values) for p in parts))
            case ("or", *parts):
                return sa.or_(*(self.build(p, table_name, t, values) for p in parts))
            case ("not", part):
                return sa.not_(self.build(part, table_name, t, values))
            case ("exists", other, inner, outer, where):
                o = self.table(other).alias()
                key = inner or self._primary_key(other)
                link = self.column(o, key, other) == col(outer)
                return sa.exists().where(link, self.build(where, other, o, values))
            case ("as is", cond):
                return self._leaf(cond, col)
        raise TypeError(f"unknown condition shape {shape[0]!r}")

    def _primary_key(self, table: str) -> str:
        """A table's one-column primary key (what `Exists` with no `inner` links to)."""
        key = self.tables()[table].primary_key
        if len(key) != 1:
            raise StoreError(f"table {table!r} needs a one-column primary key or a `key:` "
                             "to be linked to", path=f"stores.{self.name}")
        return key[0]

    def _leaf(self, cond: Condition, col: Any) -> sa.ColumnElement[bool]:
        """A condition whose values stay in its shape."""
        match cond:
            case Const(value):
                return sa.true() if value else sa.false()
            case IsNull(column):
                return col(column).is_(None)  # type: ignore[no-any-return]
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
            case OlderBySetting():
                return self._older_by_setting(cond, col, look_up=True)
            case NotPositive(column):
                c = col(column)
                return sa.and_(c.is_not(None), sa.not_(self._positive(c)))
        raise TypeError(f"unknown condition {type(cond).__name__}")

    def _older_by_setting(self, cond: OlderBySetting, col: Callable[[str], Any], *,
                          look_up: bool) -> sa.ColumnElement[bool]:
        """`cond` in SQL: the period read when the plan was made (`_known`), else the
        parent's setting looked up for the row, else the fallback. Without `look_up`, a
        row whose parent was not known is given the fallback: only for rows that
        `unknown_parents` leaves out (`Rows.count`)."""
        c, link = col(cond.column), col(cond.link)
        known = self._known(link, cond.first, cond.known)
        looked_up: list[sa.ColumnElement[Any]] = []
        if look_up or not known:
            parent = self.table(cond.table).alias()
            chosen = self.column(parent, cond.setting, cond.table)
            per_row = self._clamp(sa.cast(chosen, sa.Float) * cond.unit, cond.low, cond.high)
            looked_up = [sa.select(sa.case((self._positive(chosen), per_row)))
                         .where(self.column(parent, cond.key, cond.table) == link)
                         .scalar_subquery()]
        if known and isinstance(c.type, sa.DateTime) and c.type.timezone:
            # the parent's cutoff itself, read when the plan was made: no arithmetic on
            # the row's way to it (stores/sql/arrays.py)
            epoch = cond.now.astimezone(UTC).timestamp()
            cutoffs = sa.bindparam(None, packed_cutoffs(epoch, cond.known),
                                   TimestamptzArrayType())
            cutoff = sa.case((self._within(link, cond.first, cond.known), sa.func.nullif(
                cutoffs[self._slot(link, cond.first)],
                sa.literal_column("'infinity'::timestamptz"))))
            otherwise = sa.func.to_timestamp(sa.bindparam(None, epoch, sa.Float) -
                                             sa.func.coalesce(*looked_up, cond.fallback))
            return sa.and_(c.is_not(None), c < sa.func.coalesce(cutoff, otherwise))
        period = sa.func.coalesce(*known, *looked_up, cond.fallback)
        millis = self.dialect != "sqlite" and self._in_millis(c)
        return sa.and_(c.is_not(None), older_by(c, cond.now, period, self.dialect,
                                                 millis=millis))

    def _known(self, link: sa.ColumnElement[Any], first: int, known: tuple[float, ...]
               ) -> list[sa.ColumnElement[Any]]:
        """The period read when the plan was made for the row's parent, as an array
        subscript (PostgreSQL, an integer link; NULL for a parent not known then); none
        where that does not apply."""
        if not self._subscripted(link, known):
            return []
        # one parameter, packed once as a binary float8[] (stores/sql/arrays.py)
        periods = sa.bindparam(None, packed(known), Float8ArrayType())
        return [sa.case((self._within(link, first, known),
                         sa.func.nullif(periods[self._slot(link, first)], 0)))]

    @staticmethod
    def _slot(link: sa.ColumnElement[Any], first: int) -> sa.ColumnElement[Any]:
        """The row's parent's place in an array of the parents from key `first` on
        (PostgreSQL arrays start at 1); only where `_within` holds."""
        return sa.cast(link - sa.literal(first - 1, sa.BigInteger), sa.Integer)

    def _subscripted(self, link: sa.ColumnElement[Any], known: tuple[float, ...]) -> bool:
        """Are a row's periods read when the plan was made found by an array subscript?"""
        return bool(known) and self.dialect == "postgresql" \
            and self.engine.dialect.driver == "psycopg" \
            and isinstance(link.type, sa.Integer)  # (the array needs psycopg's dumper)

    @staticmethod
    def _within(link: sa.ColumnElement[Any], first: int, known: tuple[float, ...]
                ) -> sa.ColumnElement[bool]:
        # bounds bound as bigint: an `integer` link column compared with keys past 2^31
        # must not make PostgreSQL cast them to integer (and fail)
        return link.between(sa.literal(first, sa.BigInteger),
                            sa.literal(first + len(known) - 1, sa.BigInteger))

    def _unknown(self, link: sa.ColumnElement[Any], first: int, known: tuple[float, ...]
                 ) -> sa.ColumnElement[bool]:
        """Rows whose parent was not known when the plan was made: a link outside the keys
        read, or one of the keys with no parent (listed, as bigint: an index on the link
        answers it; past MOST_MISSING_PROBED of them, by the array, row by row)."""
        # (PostgreSQL plans NOT BETWEEN as the two ranges outside it: index ranges)
        outside = sa.not_(self._within(link, first, known))
        missing = _missing(known, first)
        if len(missing) > MOST_MISSING_PROBED:
            return sa.and_(link.is_not(None),
                           outside | self._known(link, first, known)[0].is_(None))
        from sqlalchemy.dialects import postgresql  # (only ever on PostgreSQL)

        listed = [link == sa.any_(sa.bindparam(None, list(missing),
                                               postgresql.ARRAY(sa.BigInteger)))] \
            if missing else []
        return sa.and_(link.is_not(None), sa.or_(outside, *listed))

    def unknown_parents(self, cond: Condition, table_name: str
                        ) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]] | None:
        """For a condition that judges rows by periods read when the plan was made (on
        this table, not through `Exists`): (the condition with no per-row lookup, rows
        whose parent was not known then — a link outside the keys read or one of the
        keys with no parent, so an index on the link answers it). Where no row's parent
        is unknown the two conditions agree: both take the period known for the row's
        parent, or the fallback for a row with no link. A count over the first runs in
        parallel where PostgreSQL can (a correlated lookup keeps a scan to one
        process). None when nothing is read that way."""
        t = self.table(table_name)

        def col(name: str) -> sa.ColumnElement[Any]:
            return self.column(t, name, table_name)

        unknown: list[sa.ColumnElement[bool]] = []

        def without_lookups(c: Condition) -> Condition | sa.ColumnElement[bool]:
            match c:
                case OlderBySetting() if self._subscripted(col(c.link), c.known):
                    unknown.append(self._unknown(col(c.link), c.first, c.known))
                    return self._older_by_setting(c, col, look_up=False)
                case And(parts):
                    return sa.and_(*(as_sql(without_lookups(p)) for p in parts))
                case Or(parts):
                    return sa.or_(*(as_sql(without_lookups(p)) for p in parts))
                case Not(part):
                    return sa.not_(as_sql(without_lookups(part)))
            return c

        def as_sql(c: Condition | sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
            return self.compile(c, table_name) if isinstance(c, Condition) else c

        fast = as_sql(without_lookups(cond))
        return (fast, sa.or_(*unknown)) if unknown else None

    def _positive(self, c: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """A positive number (SQLite keeps any value in any column: a number, typed so);
        and a finite one: PostgreSQL orders NaN above every number, so `NaN > 0` holds,
        and a NaN or infinite setting was clamped to the maximum, where it is invalid (the
        default), as the plan's reading of the settings takes it."""
        if self.dialect == "sqlite":  # (9e999 is SQLite's infinity; it stores NaN as NULL)
            return sa.and_(sa.func.typeof(c).in_(["integer", "real"]), c > 0,
                           c < sa.literal_column("9e999"))
        if self.dialect == "postgresql":
            return sa.and_(c > 0, c < sa.literal_column("'Infinity'::float8"))
        return c > 0

    def _clamp(self, value: sa.ColumnElement[Any], low: int, high: int
               ) -> sa.ColumnElement[Any]:
        """`value` kept within low..high (SQLite's scalar min/max, PostgreSQL's least/greatest)."""
        if self.dialect == "sqlite":
            return sa.func.min(sa.func.max(value, low), high)
        return sa.func.least(sa.func.greatest(value, low), high)

    def _in_mode(self, values: list[Any]) -> str:
        """How an `IN` list goes: as a list, or (long) as one parameter — an array or
        JSONB on PostgreSQL, JSON on SQLite — so the driver neither rewrites nor
        re-plans a statement per list length, nor hits a variable limit."""
        if len(values) <= ARRAY_AFTER:
            return "list"
        plain = all(type(v) in (int, str) for v in values)
        if self.dialect == "postgresql":
            return "jsonb" if plain else "array"
        return "json" if self.dialect == "sqlite" and plain else "list"

    def _in_list(self, c: sa.ColumnElement[Any], values: list[Any]) -> tuple[str, Any, Any]:
        """How an `IN` list of these values goes (`_in_mode`), the one value it binds (the
        list, or its JSON text), and the type a plain list is bound in (as SQLAlchemy
        compares the column with its first value)."""
        mode = self._in_mode(values)
        compared = _compared(c, operators.in_op, values[0]) if values else c.type
        return mode, _json_list(values) if mode in ("json", "jsonb") else values, compared

    def in_values(self, c: sa.ColumnElement[Any], values: list[Any]) -> sa.ColumnElement[bool]:
        """`c IN values`, the values bound with the statement."""
        mode, bound, compared = self._in_list(c, values)
        return self._in(c, mode, compared, lambda type_, expanding: sa.bindparam(
            None, bound, type_=type_, expanding=expanding, unique=True))

    def _in(self, c: sa.ColumnElement[Any], mode: str, compared: Any,
            bind: Any) -> sa.ColumnElement[bool]:
        """`c IN` the bound list, as `_in_mode` says (`bind(type, expanding)` binds it; a
        plain list in the `compared` type)."""
        if mode in ("jsonb", "array"):
            from sqlalchemy.dialects import postgresql  # loaded with a PostgreSQL engine

            if mode == "jsonb":  # (its text, cast: the driver would encode it again)
                listed = sa.func.jsonb_array_elements_text(
                    sa.cast(bind(sa.Text, False), postgresql.JSONB))
                return c.in_(sa.select(sa.cast(listed.table_valued("value").c.value, c.type)))
            return c == sa.any_(bind(postgresql.ARRAY(c.type), False))
        if mode == "json":
            # One JSON parameter read as a table (SQLite's bound array): a list of
            # thousands of held keys neither hits the variable limit nor deepens the
            # expression tree, and SQLite builds one lookup index for the IN.
            listed = sa.func.json_each(bind(sa.String, False))
            return c.in_(sa.select(listed.table_valued("value").c.value))
        return c.in_(bind(compared, True))

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
            with self._reading("reading a time column") as conn:
                top = conn.execute(sa.select(sa.func.max(c))).scalar()
            self._millis[name] = top is not None and abs(top) > MILLIS_THRESHOLD
        return self._millis[name]
