"""The store protocol and the store-neutral vocabulary the engine speaks to it.

The engine never writes SQL: it describes *which* rows (a `Condition` tree) and
*what* to do with them (an `Effect`), and each store compiles that into its own
language. Every leaf condition is two-valued (never SQL NULL), so negating one
is safe: `NOT held` must never silently drop a row because a column was NULL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

Value = Any  # a bound parameter value; never spliced into a statement
# A key names one column, or the columns of a composite primary key joined by this (no
# policy name can hold it); a composite key's value is a tuple, in the same order.
KEY_SEPARATOR = ","


def key_columns(key: str) -> tuple[str, ...]:
    """The column(s) a key names."""
    return tuple(key.split(KEY_SEPARATOR))


def composite_key(columns: Sequence[str]) -> str:
    """The key naming these columns (one column: its name)."""
    return KEY_SEPARATOR.join(columns)

# Told what a unit of work is about to commit (rows, and rows cascaded per child label),
# inside its transaction and before the commit: the run's record is written first, so
# nothing is deleted that the record does not cover. Raising rolls the work back.
Journal = Callable[[int, Mapping[str, int]], None]


class Condition:
    """Base of the condition tree (frozen dataclasses below)."""


@dataclass(frozen=True)
class Const(Condition):
    value: bool


TRUE = Const(True)
FALSE = Const(False)


@dataclass(frozen=True)
class Eq(Condition):
    column: str
    value: Value


@dataclass(frozen=True)
class In(Condition):
    column: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class IsNull(Condition):
    column: str


@dataclass(frozen=True)
class Differs(Condition):
    """Column is not NULL and differs from value."""

    column: str
    value: Value


@dataclass(frozen=True)
class NotLike(Condition):
    """Column is not NULL and does not match the LIKE pattern (case-sensitive on every
    store: on SQLite, where LIKE ignores ASCII case, it is matched with GLOB)."""

    column: str
    pattern: str


@dataclass(frozen=True)
class Older(Condition):
    """Column holds a time strictly before `cutoff` (NULL is never older)."""

    column: str
    cutoff: datetime


@dataclass(frozen=True)
class OlderBySetting(Condition):
    """`column` holds an instant more than a period before `now`, the period read per
    row from another table (a parent, lethe.policy.periods): `setting` times `unit`
    seconds of the row of `table` whose `key` is this row's `link`, kept within `low` ..
    `high` seconds; `fallback` seconds when there is no such row or the setting is not
    a positive finite number. A NULL time is never older."""

    column: str
    now: datetime
    table: str
    key: str
    link: str
    setting: str
    unit: int
    fallback: int
    low: int
    high: int
    # the periods read when the plan was made, for a dense integer key: `known[i]` is the
    # period (seconds, within low..high) of the parent whose key is `first + i` (the
    # fallback where its setting was not valid), 0 where there was no such parent. A
    # store may look a row's parent up there instead of in `table` (PostgreSQL: an
    # array subscript, ~16x cheaper than the per-row lookup); a row whose parent is not
    # there (0, or a key outside) is looked up.
    first: int = 0
    known: tuple[float, ...] = ()


@dataclass(frozen=True)
class NotPositive(Condition):
    """`column` holds something other than a positive finite number (NULL is not)."""

    column: str


@dataclass(frozen=True)
class And(Condition):
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Or(Condition):
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Not(Condition):
    part: Condition


@dataclass(frozen=True)
class Exists(Condition):
    """A row of `table` exists with `table.inner == outer.outer` and `where`.

    `store` names the store holding `table` when it may differ from the outer one; such
    a condition is resolved into an `In` over the other store's keys before it reaches
    a store (see `lethe.catalog.localize`).
    """

    table: str
    inner: str
    outer: str
    where: Condition = TRUE
    store: str | None = None


def looks_up(cond: Condition) -> bool:
    """Does the condition read another table for each row (a parent, a period from
    data)? Those lookups go through the other table's index."""
    match cond:
        case Exists() | OlderBySetting():
            return True
        case And(parts) | Or(parts):
            return any(looks_up(p) for p in parts)
        case Not(part):
            return looks_up(part)
    return False


def all_of(*parts: Condition) -> Condition:
    kept = tuple(p for p in parts if p != TRUE)
    if FALSE in kept:
        return FALSE
    return kept[0] if len(kept) == 1 else (And(kept) if kept else TRUE)


def any_of(*parts: Condition) -> Condition:
    kept = tuple(p for p in parts if p != FALSE)
    if TRUE in kept:
        return TRUE
    return kept[0] if len(kept) == 1 else (Or(kept) if kept else FALSE)


def negate(part: Condition) -> Condition:
    if isinstance(part, Const):
        return Const(not part.value)
    if isinstance(part, Not):
        return part.part
    return Not(part)


class Effect:
    """What a sweep does to the rows it selects."""


@dataclass(frozen=True)
class Delete(Effect):
    pass


@dataclass(frozen=True)
class SetColumns(Effect):
    values: tuple[tuple[str, Value], ...]


@dataclass(frozen=True)
class Anonymize(Effect):
    """Rewrite columns row by row with pure functions; optionally null a link column.
    `constants`, when every function writes one value into whatever is not NULL (and
    leaves NULL alone; None: NULL everywhere), says so per column: a store may then
    rewrite the rows in one statement without reading them first."""

    transforms: tuple[tuple[str, Callable[[Value], Value]], ...]
    detach: str | None = None
    constants: tuple[tuple[str, Value], ...] | None = None


@dataclass(frozen=True)
class Archive(Effect):
    """Hand the batch's rows to `write` (which must store and verify them, or raise),
    then delete them, all inside the batch's transaction: a failed write deletes
    nothing."""

    write: Callable[[tuple[str, ...], list[tuple[Any, ...]]], None]


@dataclass(frozen=True)
class Cascade:
    """Rows of a child table linked to the parent rows a sweep batch selects."""

    label: str
    table: str
    key: str
    link: str
    effect: Effect
    where: Condition = TRUE
    children: tuple[Cascade, ...] = ()


@dataclass(frozen=True)
class Sweep:
    """One action over one table, applied in key order, one short transaction per batch."""

    table: str
    key: str
    where: Condition
    effect: Effect
    cascades: tuple[Cascade, ...] = ()
    # Few rows among many (one subject's): batches find their rows through an index
    # instead of walking the whole key range.
    selective: bool = False
    # A column whose value in every affected row is counted (RETURNING): erasing many
    # subjects in one sweep still tells each subject's rows apart.
    tally: str | None = None
    # False: a batch's commit need not wait for its log to reach the disk; the caller
    # calls the store's `flush` before it tells anyone (audit, certificate) what went.
    durable: bool = True
    journal: Journal | None = None  # told each batch's rows before the batch commits
    # The column whose age makes a row due (a rule's `after`): where rows lie in the order
    # of that column, a store may stop its walk where the due rows end (the caller then
    # verifies and sweeps any row found past that point).
    time_column: str | None = None
    # A batch's time budget, in seconds: a store whose batches keep nothing of the rows
    # in memory (a PostgreSQL page walk) may grow them past the batch size while each
    # commits within it (stores.sql.blocks); None: every batch aims at the batch size.
    seconds: float | None = None


@dataclass(frozen=True)
class BatchResult:
    upper: Value | None  # the last key the batch covered; None when nothing was left
    rows: int
    cascaded: Mapping[str, int] = field(default_factory=dict)
    last: bool = False  # the store knows nothing matches after `upper`
    tallies: Mapping[Value, int] = field(default_factory=dict)  # Sweep.tally value -> rows


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    nullable: bool


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    table: str
    referred: tuple[str, ...]
    # the constraint's name as declared (several: one per partition that declares it;
    # none: an unnamed SQLite constraint)
    names: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: Mapping[str, ColumnInfo]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    indexed: tuple[tuple[str, ...], ...] = ()  # column lists of indexes and the primary key
    unique: tuple[tuple[str, ...], ...] = ()  # primary key, unique constraints and indexes

    def has_index_on(self, column: str) -> bool:
        return any(cols and cols[0] == column for cols in self.indexed)


@dataclass(frozen=True)
class Partition:
    """One range partition of a table: its name and its bounds on the partition key."""

    name: str
    upper: datetime | None  # exclusive; None: MAXVALUE or the default partition


@dataclass(frozen=True)
class PartitionDrops:
    """What `drop_partitions` did: per dropped partition (rows, whether that figure is
    the planner's estimate), and why it stopped early, if it did (a lock not granted in
    time, above all): the row batches take the rest, and the run says why."""

    dropped: dict[str, tuple[int, bool]]
    stopped: str | None = None


@runtime_checkable
class RowStore(Protocol):
    """A store of rows addressed by table and key (SQL today)."""

    @property
    def name(self) -> str: ...

    @property
    def dialect(self) -> str: ...

    def tables(self) -> Mapping[str, TableInfo]: ...

    def count(self, table: str, where: Condition) -> int: ...

    def select_settled(self, table: str, columns: Sequence[str],
                       where: Condition) -> list[tuple[Any, ...]]:
        """`select`, after any transaction writing these rows has ended (row locks)."""
        ...

    def rows(self, table: str, where: Condition) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """Column names and matching rows in key order (for access exports)."""
        ...

    def values(self, table: str, column: str, where: Condition) -> list[Any]:
        """Distinct non-NULL values of `column` in matching rows (cross-store links)."""
        ...

    def select(self, table: str, columns: Sequence[str],
               where: Condition) -> list[tuple[Any, ...]]:
        """These columns of matching rows, in no particular order."""
        ...

    def select_at_most(self, table: str, columns: Sequence[str],
                       most: int) -> list[tuple[Any, ...]] | None:
        """These columns of every row, when there are at most `most` (else None)."""
        ...

    def count_by(self, table: str, column: str, where: Condition) -> dict[Value, int]:
        """Matching rows per value of `column` (NULLs are not counted)."""
        ...

    def count_each(self, queries: Sequence[tuple[str, Condition]]) -> list[int]:
        """Several counts, (table, where) each, in one round trip."""
        ...

    def oldest(self, table: str, column: str, where: Condition) -> datetime | None:
        """The earliest instant in time column `column` among matching rows (one MIN
        aggregate: the age of the oldest row, for reports); None when there is none."""
        ...

    def partitions(self, table: str, column: str) -> list[Partition]:
        """The range partitions of `table` when it is range-partitioned on `column` alone
        (PostgreSQL); otherwise none."""
        ...

    def count_in_partition(self, table: str, partition: str, where: Condition) -> int: ...

    def drop_partitions(self, table: str, partitions: Sequence[str],
                        held: Callable[[], Condition], *, estimate: bool = False,
                        journal: Journal | None = None) -> PartitionDrops:
        """Detach and drop each partition in a transaction of its own, unless a row that
        the holds read after the detach (`held()`) keep is in it (then it stays
        attached); for each dropped one, (rows it held, whether that figure is the
        planner's estimate — only with `estimate`, and only where one exists). It stops
        at the first partition it cannot detach (a lock not granted in time), saying
        why: the row batches take the rest."""
        ...

    def archive_partition(self, table: str, partition: str, held: Callable[[], Condition],
                          write: Callable[[tuple[str, ...], list[tuple[Any, ...]]], None],
                          chunk_rows: int, journal: Journal | None = None) -> int | None:
        """In one transaction: lock the partition against writes, hand its rows to `write`
        `chunk_rows` at a time (it stores and verifies them, or raises), detach it, read
        the holds again and drop it. None (nothing dropped) when a held row is in it;
        an exception rolls everything back. Returns the rows dropped."""
        ...

    def count_in_partition_settled(self, table: str, partition: str, where: Condition) -> int:
        """Matching rows of a partition once no transaction is archiving it (waits for
        its lock); 0 when the partition no longer exists."""
        ...

    def insert_missing(self, table: str, key: str,
                       rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Insert the rows whose key is absent; (inserted, already present)."""
        ...

    def sweep_batch(self, sweep: Sweep, after: Value | None, limit: int) -> BatchResult: ...

    def first_batches(self, sweeps: Sequence[Sweep],
                      limit: int) -> list[BatchResult] | None:
        """The first batch of each sweep, in order — each its last: the same rows as
        `sweep_batch(sweep, None, limit)` would take, `upper` the last key it changed —
        run as one statement and committed together (all or none of them: a lone
        subject's small erasure); None, having done nothing, where the store cannot run
        these sweeps so or a sweep has a batch or more of rows."""
        ...

    def flush(self) -> None:
        """Make every commit so far durable (after batches of a `durable=False` sweep)."""
        ...

    def close(self) -> None: ...


# -- Every store: the Store protocol and its capability flags -----------------------
#
# A capability is a class attribute of an adapter, set to True or False where it is
# declared, each with a comment giving the reason; a flag the class does not declare
# is False. True is a promise the conformance suite (`lethe.testing`) holds the adapter
# to; False means "do not count on it". The names and what they promise:

CAPABILITIES: Mapping[str, str] = {
    "transactional_batches": "a batch's effects, cascades included, commit or roll back "
                             "together: a crash leaves whole batches done or undone",
    "ordered_keys": "keys are visited in ascending order, so a walk can resume after the "
                    "last key it finished",
    "returning": "the affected rows' columns come back from the statement that changed "
                 "them (a sweep's `tally`)",
    "drops_partitions": "a range partition wholly past its cutoff can be detached and "
                        "dropped instead of deleted row by row",
    "asynchronous_commit": "a `durable=False` batch commits without waiting for the log; "
                           "`flush` makes it durable and checks that it survived",
    "object_metadata": "objects carry metadata and tags that listings can return",
    "versioned_objects": "deleting a key removes every stored version of it, not just "
                         "the current one",
    "lifecycle_rules": "the store has its own expiry rules that can be read and set",
    "ttl": "every key can carry a time-to-live the store enforces by itself",
}


class Capabilities:
    """`capabilities = Capabilities()` in an adapter's class body: the names of the
    flags in CAPABILITIES that the class sets to True, on the class and its instances."""

    def __get__(self, instance: object, owner: type | None = None) -> frozenset[str]:
        cls = owner if owner is not None else type(instance)
        return frozenset(flag for flag in CAPABILITIES if getattr(cls, flag, False) is True)


def supports(store: Store, capability: str) -> bool:
    """Whether the store promises `capability` (a name from CAPABILITIES; anything else
    is a typo and raises KeyError rather than quietly answering False)."""
    if capability not in CAPABILITIES:
        raise KeyError(f"unknown store capability {capability!r}")
    return capability in store.capabilities


@runtime_checkable
class Store(Protocol):
    """What every store has, whatever it holds (rows, objects, cache keys); what else it
    can do is its kind's protocol (`RowStore`, `ObjectStore`, `RedisStore`) and its
    capability flags. `lethe.stores.registry.open_store` opens one from a URL."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str:
        """The policy's word for this kind of store: "sql", "objects" or "cache"."""
        ...

    @property
    def capabilities(self) -> frozenset[str]: ...

    def close(self) -> None: ...
