"""The policy bound to live stores: resolved keys, table descriptions, schema findings.

Every name the engine will put in a statement is checked here first, so an unknown
table or column stops a command before anything is touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lethe.errors import LetheError, SchemaMismatch
from lethe.localize import LocalStore
from lethe.policy.graph import Graph, build_graph
from lethe.policy.model import Dataset, Policy
from lethe.policy.periods import KeepFrom
from lethe.stores.base import RowStore, TableInfo, composite_key, key_columns
from lethe.stores.cache import RedisStore
from lethe.stores.objects import ObjectStore, open_object_store
from lethe.stores.sql import SqlStore
from lethe.stores.sql.values import is_number_type


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning
    code: str
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "code": self.code, "path": self.path,
                "message": self.message}


@dataclass
class Catalog:
    policy: Policy
    graph: Graph
    _stores: dict[str, RowStore] = field(default_factory=dict)
    _caches: dict[str, RedisStore] = field(default_factory=dict)
    _objects: dict[str, ObjectStore] = field(default_factory=dict)
    # dataset -> its table as its store reflected it, and its key: a store reads its
    # schema once and keeps it, so these hold until `close` (asked ~90 times an erasure)
    _described: dict[str, TableInfo] = field(default_factory=dict)
    _keyed: dict[str, str] = field(default_factory=dict)

    def cache_store(self, store: str) -> RedisStore:
        if store not in self._caches:
            self._caches[store] = RedisStore(store, self.policy.stores[store].url)
        return self._caches[store]

    def object_store(self, store: str) -> ObjectStore:
        if store not in self._objects:
            spec = self.policy.stores[store]
            self._objects[store] = open_object_store(
                store, spec.url, write_args=spec.archive.put_args() if spec.archive else None)
        return self._objects[store]

    def object_datasets(self, names: Iterable[str] | None = None) -> list[str]:
        chosen = list(self.policy.datasets) if names is None else list(names)
        return [n for n in chosen
                if self.policy.stores[self.policy.datasets[n].store].kind == "objects"]

    def cache_datasets(self, names: Iterable[str] | None = None) -> list[str]:
        chosen = list(self.policy.datasets) if names is None else list(names)
        return [n for n in chosen
                if self.policy.stores[self.policy.datasets[n].store].kind == "cache"]

    def row_store(self, store: str) -> RowStore:
        if store not in self._stores:
            spec = self.policy.stores[store]
            if spec.kind != "sql":
                raise LetheError(f"{spec.kind} stores are not supported yet",
                                 path=f"stores.{store}")
            self._stores[store] = SqlStore(store, spec.url)
        return self._stores[store]

    def store_of(self, dataset: str) -> RowStore:
        """The dataset's store, resolving links to other stores in every condition."""
        return LocalStore(self.row_store(self.policy.datasets[dataset].store), self.row_store)

    def table_of(self, dataset: str) -> TableInfo:
        found = self._described.get(dataset)
        if found is not None:
            return found
        ds = self.policy.datasets[dataset]
        tables = self.store_of(dataset).tables()
        if ds.table is None or ds.table not in tables:
            raise SchemaMismatch(f"table {ds.table!r} does not exist in store {ds.store!r}",
                                 path=f"datasets.{dataset}.table")
        found = self._described[dataset] = tables[ds.table]
        return found

    def key_of(self, dataset: str) -> str:
        """The column(s) batches walk and rows are addressed by (stores.base.key_columns):
        `key:`, else the primary key — a composite one too, where nothing links to the
        dataset by its key."""
        found = self._keyed.get(dataset)
        if found is not None:
            return found
        ds = self.policy.datasets[dataset]
        columns = ds.key_columns or self.table_of(dataset).primary_key
        if not columns:
            raise SchemaMismatch(f"table {ds.table!r} has no primary key; set `key:`",
                                 path=f"datasets.{dataset}.key")
        if len(columns) > 1:
            why = single_key_needed(self.policy, dataset)
            if why is not None:
                raise SchemaMismatch(
                    f"table {ds.table!r} has a composite key ({', '.join(columns)}); {why} "
                    "needs a single-column key: set `key:` to a unique column",
                    path=f"datasets.{dataset}.key")
        found = self._keyed[dataset] = composite_key(columns)
        return found

    def keys(self) -> dict[str, str]:
        """Each SQL dataset's key column (raises SchemaMismatch when one has none)."""
        return {n: self.key_of(n) for n in self.sql_datasets()}

    def nullable(self) -> dict[tuple[str, str], bool]:
        """(dataset, column) -> whether the live column accepts NULL."""
        return {(n, c.name): c.nullable for n in self.sql_datasets()
                for c in self.table_of(n).columns.values()}

    def sql_datasets(self, names: Iterable[str] | None = None) -> list[str]:
        chosen = list(self.policy.datasets) if names is None else list(names)
        return [n for n in chosen
                if self.policy.stores[self.policy.datasets[n].store].kind == "sql"]

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        for cache in self._caches.values():
            cache.close()
        for objects in self._objects.values():
            objects.close()
        self._stores.clear()
        self._caches.clear()
        self._objects.clear()
        self._described.clear()  # a store opened again reads its schema again
        self._keyed.clear()


@dataclass(frozen=True)
class Reference:
    """A foreign key into a dataset's key: the referencing table and column, and the
    constraint's name(s) as the database declares it."""

    table: str
    column: str
    constraints: tuple[str, ...] = ()  # none: unnamed (SQLite); several: per partition

    def describe(self) -> str:
        """How plans, run records, reports and certificates name it."""
        where = f"{self.table}.{self.column}"
        if not self.constraints:
            return f"foreign key {where}"
        more = len(self.constraints) - 1
        return f"{self.constraints[0]} ({where}" + \
            (f"; and {more} more on its partitions)" if more else ")")


def single_key_needed(policy: Policy, name: str) -> str | None:
    """Why the dataset must have a one-column key (others link to it by that column, or
    its archive chunks list it), or None."""
    ds = policy.datasets[name]
    if policy.subject_kind_of(name) is not None:
        return "a subject's dataset"
    if any(name in other.belongs_to for other in policy.datasets.values()):
        return "a dataset others belong_to"
    if ds.referenced_by:
        return "a dataset found through referenced_by"
    if ds.archive_targets:
        return "an archived dataset"
    if policy.residency is not None and policy.residency.dataset == name:
        return "the residency dataset"
    return None


def unhandled_references(catalog: Catalog, keys: Mapping[str, str],
                         nullable: Mapping[tuple[str, str], bool],
                         ) -> dict[str, tuple[Reference, ...]]:
    """Foreign keys into each dataset's key that no `belongs_to` cascade takes care of.

    A child declared with `belongs_to` and `erasure: delete` is deleted first, and one
    with `erasure: anonymize` on a nullable link is detached; any other reference
    (retained rows, undeclared tables, links the policy does not know) remains.
    """
    policy = catalog.policy
    found: dict[str, tuple[Reference, ...]] = {}
    for name in keys:
        ds = policy.datasets[name]
        refs: list[Reference] = []
        for info in catalog.row_store(ds.store).tables().values():
            for fk in info.foreign_keys:
                if fk.table == ds.table and len(fk.columns) > 1 and \
                        set(fk.referred) == set(key_columns(keys[name])):
                    raise SchemaMismatch(  # its rows would be blocked, or fail, unseen
                        f"table {info.name!r} references {ds.table!r} by its composite key; "
                        "only single-column references are followed",
                        path=f"datasets.{name}.key")
                if fk.table != ds.table or fk.referred != (keys[name],) or len(fk.columns) != 1:
                    continue
                column = fk.columns[0]
                if not _handled(policy, name, ds.store, info.name, column, nullable):
                    refs.append(Reference(info.name, column, fk.names))
        if refs:
            found[name] = tuple(refs)
    return found


def _handled(policy: Policy, parent: str, store: str, table: str, column: str,
             nullable: Mapping[tuple[str, str], bool]) -> bool:
    for child, ds in policy.datasets.items():
        if ds.store == store and ds.table == table and ds.belongs_to.get(parent) == column:
            if ds.erasure == "delete":
                return True
            if ds.erasure == "anonymize" and nullable.get((child, column), False):
                return True
    return False


def open_catalog(policy: Policy) -> Catalog:
    return Catalog(policy, build_graph(policy.datasets))


def referenced_columns(name: str, ds: Dataset, policy: Policy) -> list[tuple[str, str]]:
    """(policy path, column) for every column the dataset's policy names."""
    where = f"datasets.{name}"
    refs: list[tuple[str, str]] = []
    refs += [(f"{where}.key", column) for column in ds.key_columns]
    if ds.workspace:
        refs.append((f"{where}.workspace", ds.workspace))
    refs += [(f"{where}.fields.{f}", f) for f in ds.fields]
    if ds.soft_delete:
        refs.append((f"{where}.soft_delete.column", ds.soft_delete.column))
        if ds.soft_delete.at:
            refs.append((f"{where}.soft_delete.at", ds.soft_delete.at))
    for i, rule in enumerate(ds.retention):
        if rule.after:  # `keep: forever` needs none
            refs.append((f"{where}.retention[{i}].after", rule.after))
        # (a parent's column, PARENT.COLUMN, is checked on the parent: _parent_columns)
        refs += [(f"{where}.retention[{i}].when.{c}", c) for c in rule.when if "." not in c]
    refs += [(f"{where}.belongs_to.{p}", c) for p, c in ds.belongs_to.items()]
    for kind, subject in policy.subjects.items():
        if subject.dataset == name:
            refs += [(f"subjects.{kind}.identities", c) for c in subject.identities]
    return refs


def schema_findings(catalog: Catalog, names: Iterable[str] | None = None) -> list[Finding]:
    """Tables, columns and keys the policy names but the live stores lack."""
    findings: list[Finding] = []
    policy = catalog.policy
    for name in catalog.sql_datasets(names):
        ds = policy.datasets[name]
        try:
            info = catalog.table_of(name)
            key = catalog.key_of(name)
        except SchemaMismatch as exc:
            findings.append(Finding("error", "missing-table", exc.path or name, exc.message))
            continue
        for column in key_columns(key):
            if column not in info.columns:
                findings.append(Finding("error", "missing-column", f"datasets.{name}.key",
                                        f"column {column!r} does not exist in table "
                                        f"{ds.table!r}"))
        for path, column in referenced_columns(name, ds, policy):
            if column not in info.columns:
                findings.append(Finding("error", "missing-column", path,
                                        f"column {column!r} does not exist in table "
                                        f"{ds.table!r}"))
        for parent in ds.belongs_to:
            try:
                parent_key = catalog.key_of(parent)
                parent_info = catalog.table_of(parent)
            except SchemaMismatch:
                continue  # reported on the parent itself
            if any(c not in parent_info.columns for c in key_columns(parent_key)):
                findings.append(Finding("error", "missing-column", f"datasets.{parent}.key",
                                        f"column {parent_key!r} does not exist"))
        findings += _parent_columns(catalog, name)
        for referrer, column in ds.referenced_by.items():
            try:
                referrer_info = catalog.table_of(referrer)
            except SchemaMismatch:
                continue  # reported on the referrer itself
            if column not in referrer_info.columns:
                findings.append(Finding(
                    "error", "missing-column", f"datasets.{name}.referenced_by.{referrer}",
                    f"column {column!r} does not exist in table "
                    f"{policy.datasets[referrer].table!r}"))
    return findings


def _parent_columns(catalog: Catalog, name: str) -> list[Finding]:
    """The parents' columns the rules read: each `when` on PARENT.COLUMN is there, each
    period from data is there and a number."""
    findings: list[Finding] = []
    policy = catalog.policy
    for index, rule in enumerate(policy.datasets[name].retention):
        read = [(f"retention[{index}].when.{c}", *c.split(".", 1)) for c in rule.when
                if "." in c]
        if isinstance(rule.keep, KeepFrom) and rule.keep.from_:
            read.append((f"retention[{index}].keep.from", rule.keep.dataset,
                         rule.keep.column))
        for path, parent, column in read:
            try:
                found = catalog.table_of(parent).columns.get(column)
            except SchemaMismatch:
                continue  # reported on the parent itself
            if found is None:
                findings.append(Finding("error", "missing-column", f"datasets.{name}.{path}",
                                        f"column {column!r} does not exist in table "
                                        f"{policy.datasets[parent].table!r}"))
            elif path.endswith("keep.from") and not is_number_type(found.type):
                assert isinstance(rule.keep, KeepFrom)
                findings.append(Finding("error", "missing-column", f"datasets.{name}.{path}",
                                        f"column {column!r} is {found.type}, not a number "
                                        f"of {rule.keep.unit}"))
    return findings


def require_schema(catalog: Catalog, names: Iterable[str] | None = None) -> None:
    """Stop before touching anything when the policy and the live schema disagree."""
    for finding in schema_findings(catalog, names):
        if finding.severity == "error":
            raise SchemaMismatch(finding.message, path=finding.path)
