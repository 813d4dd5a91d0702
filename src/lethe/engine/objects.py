"""Object datasets: objects under a prefix, aged by last-modified time or a metadata
timestamp, deleted in batches; holds keep a subject's objects; erasure removes them.

Rules work as for rows: the first rule whose `when` (on `metadata.NAME` or `tag.NAME`)
matches an object governs it, and the object is due once older than `keep`. An object
whose age field is missing or unreadable is not due (as a NULL `after` keeps a row). An
object belongs to a subject through the dataset's `per_subject` template: a key prefix
(`exports/{id}/`) read back as a pattern, so each key names its subject, or a metadata
value (`metadata.owner={id}`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lethe.catalog import Catalog
from lethe.holds import HeldValues, HoldGate, HoldScopes, held_subjects
from lethe.policy.model import Dataset, Policy, Rule, template_fields
from lethe.policy.periods import longest
from lethe.stores.base import FALSE
from lethe.stores.objects import ObjectInfo, ObjectStore

KeyFilter = Callable[[str], bool]  # True: a hold keeps this object
HoldsNow = Callable[[], HoldScopes]


def prefix_regex(template: str) -> re.Pattern[str]:
    """`exports/{id}/` → a pattern matching the start of that subject's keys. A value
    never spans a `/`, and one that ends the template ends at a `/` or the key's end:
    `exports/{id}` must read `exports/42/a.csv` as subject 42, never 4."""
    parts: list[str] = []
    seen: set[str] = set()
    pieces = list(string.Formatter().parse(template))
    for index, (literal, name, _spec, _conv) in enumerate(pieces):
        parts.append(re.escape(literal))
        if name is not None:
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+?)")
            seen.add(name)
            if index == len(pieces) - 1:
                parts.append("(?=/|$)")
    return re.compile("".join(parts), re.DOTALL)


def _needs_metadata(ds: Dataset) -> bool:
    return any(r.after.startswith("metadata.") or any(k.startswith("metadata.") for k in r.when)
               for r in ds.retention) or any(t.startswith("metadata.")
                                             for t in ds.per_subject.values())


def _needs_tags(ds: Dataset) -> bool:
    return any(k.startswith("tag.") for r in ds.retention for k in r.when)


def _matches(rule: Rule, item: ObjectInfo) -> bool:
    for key, wanted in rule.when.items():
        source, _, name = key.partition(".")
        # S3 lowercases metadata names (tags keep their case)
        value = item.tags.get(name) if source == "tag" else item.metadata.get(name.lower())
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if not any((value is None) if a is None else value == str(a) for a in allowed):
            return False
    return True


def _age_from(rule: Rule, item: ObjectInfo) -> datetime | None:
    if not rule.after.startswith("metadata."):
        return item.last_modified
    text = item.metadata.get(rule.after[len("metadata."):].lower())
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def governing_rule(ds: Dataset, item: ObjectInfo) -> int | None:
    """The index of the first rule whose `when` matches the object."""
    return next((i for i, rule in enumerate(ds.retention) if _matches(rule, item)), None)


def is_due(ds: Dataset, index: int, item: ObjectInfo, now: datetime) -> bool:
    if governing_rule(ds, item) != index:
        return False
    rule = ds.retention[index]
    cutoff = longest(rule.keep).before(now)  # (an object rule's period is fixed)
    age = _age_from(rule, item)
    return cutoff is not None and age is not None and age < cutoff


@dataclass(frozen=True)
class SubjectLocator:
    """Where a `per_subject` template finds the subject of an object: in its key (a
    prefix) or in one metadata value (`metadata.NAME=TEMPLATE`)."""

    metadata: str | None
    regex: re.Pattern[str]
    columns: tuple[str, ...]

    @classmethod
    def parse(cls, template: str) -> SubjectLocator:
        columns = template_fields(template)
        if template.startswith("metadata.") and "=" in template:
            name, _, value = template.partition("=")
            return cls(name[len("metadata."):].lower(), prefix_regex(value), columns)
        return cls(None, prefix_regex(template), columns)

    def subject_of(self, item: ObjectInfo) -> tuple[str, ...] | None:
        if self.metadata is None:
            found = self.regex.match(item.key)
        else:
            value = item.metadata.get(self.metadata)
            found = None if value is None else self.regex.fullmatch(value)
        return None if found is None else tuple(found.group(c) for c in self.columns)


HeldObject = Callable[[ObjectInfo], bool]


class ObjectDatasets:
    """What lethe does to one policy's object datasets."""

    def __init__(self, policy: Policy, catalog: Catalog) -> None:
        self.policy, self.catalog = policy, catalog

    def store(self, name: str) -> ObjectStore:
        return self.catalog.object_store(self.policy.datasets[name].store)

    def _objects(self, name: str) -> Iterator[list[ObjectInfo]]:
        ds = self.policy.datasets[name]
        return self.store(name).pages(ds.prefix or "", metadata=_needs_metadata(ds),
                                      tags=_needs_tags(ds))

    def held(self, name: str, holds: HoldScopes) -> HeldObject:
        """Which objects of `name` a hold in force keeps."""
        if holds.dataset_held(name):
            return lambda _item: True
        found: list[tuple[SubjectLocator, HeldValues]] = []
        for kind, template in self.policy.datasets[name].per_subject.items():
            locator = SubjectLocator.parse(template)
            held = held_subjects(holds, self.catalog.store_of(self.policy.subjects[kind].dataset),
                                 kind, locator.columns)
            if held is not None:
                found.append((locator, held))
        if not found:
            return lambda _item: False
        return lambda item: any(loc.subject_of(item) in values for loc, values in found)

    def held_keys(self, name: str, holds: HoldScopes) -> KeyFilter:
        """The same as `held`, by key (one listing when subjects are found in metadata)."""
        held = self.held(name, holds)
        ds = self.policy.datasets[name]
        if not any(t.startswith("metadata.") for t in ds.per_subject.values()):
            return lambda key: held(ObjectInfo(key, datetime.min.replace(tzinfo=UTC), 0))
        keys = {item.key for page in self._objects(name) for item in page if held(item)}
        return lambda key: key in keys

    def reached_by_holds(self, name: str, holds: HoldScopes) -> bool:
        """Could a hold in force keep any of the dataset's objects?"""
        if holds.dataset_held(name):
            return True
        return bool(holds.holds) and any(
            holds.down(self.policy.subjects[kind].dataset) != FALSE
            for kind in self.policy.datasets[name].per_subject)

    def census(self, name: str, index: int, now: datetime,
               holds: HoldScopes) -> tuple[int, int]:
        """(objects due under rule `index` and free to go, such objects held)."""
        ds = self.policy.datasets[name]
        held = self.held(name, holds)
        due = kept = 0
        for page in self._objects(name):
            for item in page:
                if is_due(ds, index, item, now):
                    if held(item):
                        kept += 1
                    else:
                        due += 1
        return due, kept

    def sweep(self, name: str, index: int, now: datetime, holds_now: HoldsNow, gate: HoldGate,
              on_page: Callable[[int], None] | None = None,
              journal: Callable[[int], None] | None = None) -> int:
        """Delete the objects due under rule `index`, a page at a time; holds are re-read
        for every page, under the hold gate until the page's objects are gone.
        `journal` is told how many a page is about to delete, before it does."""
        ds = self.policy.datasets[name]
        deleted = 0
        for page in self._objects(name):
            with gate.shared():
                held = self.held(name, holds_now())
                due = [item.key for item in page
                       if is_due(ds, index, item, now) and not held(item)]
                if due and journal is not None:
                    journal(len(due))
                done = self.store(name).delete(due) if due else 0
            if done:
                deleted += done
                if on_page is not None:
                    on_page(done)
        return deleted

    def keys_by_subject(self, name: str, subject_kind: str,
                        subjects: Sequence[tuple[str, dict[str, object]]]
                        ) -> dict[str, list[str]]:
        """(mark, subject row) pairs -> each subject's object keys, from one listing."""
        locator = SubjectLocator.parse(self.policy.datasets[name].per_subject[subject_kind])
        owner = {tuple(str(row[c]) for c in locator.columns): mark for mark, row in subjects}
        found: dict[str, list[str]] = {mark: [] for mark, _ in subjects}
        for page in self._objects(name):
            for item in page:
                mark = owner.get(locator.subject_of(item) or ())
                if mark is not None:
                    found[mark].append(item.key)
        return found

    def remove(self, name: str, keys: Sequence[str]) -> int:
        return self.store(name).delete(keys) if keys else 0

    def export(self, name: str, keys: Sequence[str]) -> tuple[tuple[str, ...],
                                                              list[tuple[Any, ...]]]:
        """A subject's objects for an access export: key, size, time and content."""
        wanted = set(keys)
        store = self.store(name)
        rows: list[tuple[Any, ...]] = []
        for page in store.pages(self.policy.datasets[name].prefix or "", metadata=True,
                                tags=True):
            for item in page:
                if item.key in wanted:
                    rows.append((item.key, item.size, item.last_modified,
                                 dict(item.metadata), dict(item.tags), store.get(item.key)))
        return ("key", "size", "last_modified", "metadata", "tags", "content"), rows
