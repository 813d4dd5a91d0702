"""Cache datasets (Redis): retention is a maximum TTL, holds keep a subject's keys as
they are, and erasure removes a subject's keys.

A key belongs to a subject through the dataset's `per_subject` template
(`session:{id}:*`): the template is read back as a pattern with one group per
`{column}`, so a key names its subject without any lookup. Held subjects are the
subject rows the holds reach (a subject hold, a workspace hold on the subject
dataset's workspace column, a dataset hold), read afresh for every SCAN page.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lethe.catalog import Catalog
from lethe.holds import HoldGate, HoldScopes, held_subjects
from lethe.policy.model import Policy, template_fields
from lethe.stores.cache import KeyFilter, RedisStore

HoldsNow = Callable[[], HoldScopes]  # the holds in force, read when called


def _glob_to_regex(text: str) -> str:
    """A literal stretch of a Redis glob pattern as a regular expression."""
    out = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(re.escape(text[index + 1]))
            index += 2
            continue
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = text.find("]", index + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = text[index + 1:end]
                body = "^" + body[1:] if body.startswith("^") else body
                out.append("[" + body.replace("\\", "\\\\") + "]")
                index = end
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def template_regex(template: str) -> re.Pattern[str]:
    """`session:{id}:*` → a pattern whose named groups give the subject's columns."""
    parts: list[str] = []
    seen: set[str] = set()
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        parts.append(_glob_to_regex(literal))
        if name is None:
            continue
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
        seen.add(name)
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True)
class _SubjectMatcher:
    regex: re.Pattern[str]
    columns: tuple[str, ...]
    held: frozenset[tuple[str, ...]]

    def holds(self, key: str) -> bool:
        found = self.regex.fullmatch(key)
        return found is not None and \
            tuple(found.group(c) for c in self.columns) in self.held


class CacheDatasets:
    """What lethe does to one policy's cache datasets."""

    def __init__(self, policy: Policy, catalog: Catalog) -> None:
        self.policy, self.catalog = policy, catalog

    def store(self, name: str) -> RedisStore:
        return self.catalog.cache_store(self.policy.datasets[name].store)

    def held_keys(self, name: str, holds: HoldScopes) -> KeyFilter:
        """Which keys of `name` a hold in force keeps."""
        if holds.dataset_held(name):
            return lambda _key: True
        matchers: list[_SubjectMatcher] = []
        for kind, template in self.policy.datasets[name].per_subject.items():
            columns = template_fields(template)
            held = held_subjects(holds, self.catalog.store_of(self.policy.subjects[kind].dataset),
                                 kind, columns)
            if held is not None:
                matchers.append(_SubjectMatcher(template_regex(template), columns, held))
        if not matchers:
            return lambda _key: False
        return lambda key: any(m.holds(key) for m in matchers)

    def census(self, name: str, now: datetime, holds: HoldScopes) -> tuple[int, int]:
        """(keys outliving the maximum TTL and free to change, such keys held)."""
        ttl = self.policy.datasets[name].max_ttl(now)
        if ttl is None:
            return 0, 0
        found = self.store(name).census(self.policy.datasets[name].pattern or "", ttl,
                                        self.held_keys(name, holds))
        return found.over, found.held

    def cap(self, name: str, now: datetime, holds_now: HoldsNow, gate: HoldGate,
            on_page: Callable[[int], None] | None = None) -> int:
        """Cap every free key's TTL at the maximum; holds are re-read for every page, each
        page under the hold gate from that read to its last TTL set."""
        ttl = self.policy.datasets[name].max_ttl(now)
        if ttl is None:
            return 0
        return self.store(name).cap_ttl(self.policy.datasets[name].pattern or "", ttl,
                                        lambda: self.held_keys(name, holds_now()), on_page,
                                        gate.shared)

    def keys_by_subject(self, name: str, subject_kind: str,
                        subjects: Sequence[tuple[str, dict[str, object]]]) -> dict[str, list[str]]:
        """(mark, subject row) pairs -> each subject's keys in the dataset, from one SCAN
        of the dataset's pattern (a key names its subject through the template)."""
        ds = self.policy.datasets[name]
        template = ds.per_subject[subject_kind]
        columns = template_fields(template)
        owner = {tuple(str(row[c]) for c in columns): mark for mark, row in subjects}
        regex = template_regex(template)
        found: dict[str, set[str]] = {mark: set() for mark, _ in subjects}
        for keys in self.store(name).pages(ds.pattern or ""):
            for key in keys:
                match = regex.fullmatch(key)
                if match is not None:
                    mark = owner.get(tuple(match.group(c) for c in columns))
                    if mark is not None:
                        found[mark].add(key)
        return {mark: sorted(keys) for mark, keys in found.items()}

    def remove(self, name: str, keys: Sequence[str]) -> int:
        return self.store(name).unlink_keys(keys) if keys else 0

    def export(self, name: str, keys: Sequence[str]) -> tuple[tuple[str, ...],
                                                              list[tuple[Any, ...]]]:
        """A subject's keys for an access export: key, type, TTL and value."""
        return ("key", "type", "ttl_seconds", "value"), \
            [tuple(row) for row in self.store(name).read(keys)]
