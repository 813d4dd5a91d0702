"""Which adapter serves a store URL: one table from URL scheme to adapter class.

`open_store(name, url)` is the one place a URL becomes a store. The scheme is read
the way the policy reads it (`postgresql+psycopg://` is `postgresql`), and an unknown
one is a `StoreError` naming the store's `url`. A new adapter is a class satisfying
`lethe.stores.base.Store` (and its kind's protocol), an entry in `ADAPTERS`, and a
run of the conformance suite in `lethe.testing` (see docs/stores.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from lethe.errors import StoreError
from lethe.stores.base import Store
from lethe.stores.cache import RedisStore
from lethe.stores.objects import LocalObjects, S3Objects
from lethe.stores.sql import PostgresStore, SqliteStore

Adapter = Callable[[str, str], Store]  # (store name, URL) -> an open store

ADAPTERS: Mapping[str, Adapter] = MappingProxyType({
    "sqlite": SqliteStore,
    "postgresql": PostgresStore,
    "postgres": PostgresStore,
    "file": LocalObjects,
    "s3": S3Objects,
    "redis": RedisStore,
    "rediss": RedisStore,  # Redis over TLS: the same adapter
})


def scheme_of(url: str) -> str:
    """The URL's scheme without a driver suffix: `postgresql+psycopg://…` -> `postgresql`."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def adapter_for(name: str, url: str) -> Adapter:
    """The adapter class for this URL; StoreError (at `stores.NAME.url`) when none."""
    scheme = scheme_of(url)
    adapter = ADAPTERS.get(scheme) if "://" in url else None
    if adapter is None:
        raise StoreError(f"no store adapter for URL scheme {scheme!r} (known: "
                         f"{', '.join(sorted(ADAPTERS))})", path=f"stores.{name}.url")
    return adapter


def open_store(name: str, url: str) -> Store:
    """The store `name` at `url`, opened by its scheme's adapter. A relative `file://`
    path is taken from the current directory."""
    return adapter_for(name, url)(name, url)
