"""What the caller hands the suite: one backend per store the suite runs against.

A backend is a URL (the store is opened from it through the registry, in this process
and, for the crash test, in a child process) plus what the suite cannot do through the
store's own API: a key prefix of the test's own on a shared Redis, and for object
stores that claim `versioned_objects`, a way to switch versioning on and count the
versions a key has left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RowBackend:
    """A SQL database the suite may create tables in (a throwaway one: it drops none)."""

    url: str


class Versioning(Protocol):
    """A versioned object store's bucket, seen from outside the adapter."""

    def enable(self) -> None:
        """Switch versioning on (before the suite opens the store)."""
        ...

    def versions(self, key: str) -> int:
        """How many versions and delete markers `key` (relative to the store's root)
        has in the bucket."""
        ...


@dataclass(frozen=True)
class ObjectBackend:
    """An empty object store: a directory or a bucket (with a root prefix)."""

    url: str
    versioning: Versioning | None = None  # required when the adapter is versioned


@dataclass(frozen=True)
class CacheBackend:
    """A Redis database and a key prefix no one else uses; the caller removes the
    prefix's keys afterwards."""

    url: str
    prefix: str
