"""The store registry, the Store protocol and the capability flags."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lethe.errors import StoreError
from lethe.policy.model import Store as StoreSpec
from lethe.stores.base import CAPABILITIES, RowStore, Store, supports
from lethe.stores.cache import RedisStore
from lethe.stores.objects import LocalObjects, S3Objects
from lethe.stores.registry import ADAPTERS, adapter_for, open_store, scheme_of
from lethe.stores.sql import PostgresStore, SqliteStore, SqlStore

ADAPTER_CLASSES = sorted({*ADAPTERS.values(), SqlStore}, key=lambda c: c.__name__)


def test_every_scheme_the_policy_accepts_has_an_adapter_of_the_policy_kind() -> None:
    """Two tables name the store schemes (the policy model's and the registry's): they
    must agree on the schemes and on the kind each one is."""
    for scheme, adapter in ADAPTERS.items():
        spec = StoreSpec(url=f"{scheme}://somewhere/x")
        assert adapter.kind == spec.kind, scheme  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unsupported store URL scheme"):
        StoreSpec(url="mysql://db/app")
    assert "mysql" not in ADAPTERS


@pytest.mark.parametrize(("url", "scheme"), [
    ("postgresql+psycopg://u@h/db", "postgresql"),
    ("postgres://u@h/db", "postgres"),
    ("SQLite:///x.db", "sqlite"),
    ("s3://bucket/prefix?region=eu-west-1", "s3"),
    ("rediss://h:6380/0", "rediss"),
])
def test_the_scheme_is_read_without_its_driver(url: str, scheme: str) -> None:
    assert scheme_of(url) == scheme


@pytest.mark.parametrize(("url", "adapter"), [
    ("sqlite:///x.db", SqliteStore),
    ("postgresql+psycopg://u@h/db", PostgresStore),
    ("postgres://u@h/db", PostgresStore),
    ("file:///tmp/x", LocalObjects),
    ("s3://bucket", S3Objects),
    ("redis://h:6379/0", RedisStore),
    ("rediss://h:6380/0", RedisStore),
])
def test_each_scheme_has_its_adapter(url: str, adapter: type) -> None:
    assert adapter_for("app", url) is adapter


@pytest.mark.parametrize("url", ["mysql://db/app", "ftp://host/x", "no-scheme-at-all", ""])
def test_an_unknown_scheme_is_a_store_error_at_the_url(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store("app", url)
    assert caught.value.path == "stores.app.url"
    assert "no store adapter" in caught.value.message


def test_open_store_opens_each_kind(tmp_path: Path, s3_url: str,
                                    redis_space: tuple[str, str]) -> None:
    sqlite3.connect(tmp_path / "app.db").close()
    opened = [open_store("rows", f"sqlite:///{tmp_path / 'app.db'}"),
              open_store("files", f"file://{tmp_path / 'objects'}"),
              open_store("bucket", s3_url),
              open_store("cache", redis_space[0])]
    try:
        assert [type(s) for s in opened] == [SqliteStore, LocalObjects, S3Objects, RedisStore]
        assert [s.name for s in opened] == ["rows", "files", "bucket", "cache"]
        assert [s.kind for s in opened] == ["sql", "objects", "objects", "cache"]
        assert all(isinstance(s, Store) for s in opened)
        assert isinstance(opened[0], RowStore)
        assert not isinstance(opened[1], RowStore)
    finally:
        for store in opened:
            store.close()


def test_a_dialect_class_refuses_another_database(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "app.db").close()
    with pytest.raises(StoreError, match="a postgresql store was given a sqlite URL"):
        PostgresStore("app", f"sqlite:///{tmp_path / 'app.db'}")


@pytest.mark.parametrize("adapter", ADAPTER_CLASSES, ids=lambda c: c.__name__)
def test_every_flag_an_adapter_sets_is_a_known_capability(adapter: Any) -> None:
    """A misspelt flag would quietly read as False: every public boolean class
    attribute of an adapter must be a capability, and its capabilities only those."""
    flags = {name for cls in adapter.__mro__ for name, value in vars(cls).items()
             if isinstance(value, bool) and not name.startswith("_")}
    assert flags <= set(CAPABILITIES)
    assert adapter.capabilities == {f for f in flags if getattr(adapter, f) is True}
    assert {"transactional_batches", "ordered_keys"} <= flags  # every adapter says


def test_the_flags_say_what_each_adapter_is() -> None:
    assert SqliteStore.capabilities == {"transactional_batches", "ordered_keys", "returning"}
    assert PostgresStore.capabilities == {"transactional_batches", "ordered_keys",
                                          "returning", "drops_partitions",
                                          "asynchronous_commit"}
    assert SqlStore.capabilities == SqliteStore.capabilities  # only what every dialect has
    assert LocalObjects.capabilities == {"ordered_keys", "object_metadata"}
    assert S3Objects.capabilities == {"ordered_keys", "object_metadata",
                                      "versioned_objects", "lifecycle_rules"}
    assert RedisStore.capabilities == {"ttl"}


def test_asking_for_an_unknown_capability_is_an_error(tmp_path: Path) -> None:
    store = open_store("files", f"file://{tmp_path}")
    try:
        assert supports(store, "ordered_keys")
        with pytest.raises(KeyError, match="ordered_key"):
            supports(store, "ordered_key")
    finally:
        store.close()
