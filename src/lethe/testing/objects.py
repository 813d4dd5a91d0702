"""The object store suite: listing under a prefix, deleting a page, held keys kept,
and no version of a deleted object left behind.

Objects are written through the store's own `put`; versions are counted through the
backend's `Versioning` hook, since no store method lists them.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from lethe.errors import StoreError
from lethe.stores.base import CAPABILITIES, Store, supports
from lethe.stores.objects import ObjectStore
from lethe.stores.registry import open_store
from lethe.testing.backends import ObjectBackend

LISTED = 1_005  # more keys than one listing page (1,000)


@contextmanager
def opened(url: str) -> Iterator[Any]:
    """The object store at `url`, opened through the registry (typed loosely: the
    suite also reaches the optional methods its capability flags promise)."""
    store = open_store("conformance", url)
    assert isinstance(store, Store)
    try:
        yield store
    finally:
        store.close()


def put_all(store: ObjectStore, objects: dict[str, bytes]) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:  # S3 is a request per object
        list(pool.map(lambda item: store.put(item[0], item[1]), objects.items()))


def listed(store: ObjectStore, prefix: str) -> list[str]:
    return [info.key for page in store.pages(prefix) for info in page]


class ObjectStoreSuite:
    """Every object store adapter passes these. The caller provides `object_backend`."""

    def test_an_object_store_says_what_it_is(self, object_backend: ObjectBackend) -> None:
        with opened(object_backend.url) as store:
            assert store.kind == "objects"
            assert store.capabilities <= set(CAPABILITIES)
            assert "returning" not in store.capabilities  # no statement to return from
            assert supports(store, "versioned_objects") == (
                object_backend.versioning is not None), \
                "a versioned adapter needs a backend that can count versions, and only it"

    def test_listing_under_a_prefix_finds_exactly_its_keys(
            self, object_backend: ObjectBackend) -> None:
        wanted = {f"logs/2024/{i:05d}.json": f"entry {i}".encode() for i in range(LISTED)}
        others = {"logs-old/x.json": b"x", "other/logs/y.json": b"y", "logs.txt": b"z"}
        with opened(object_backend.url) as store:
            put_all(store, {**wanted, **others})
            pages = list(store.pages("logs/"))
            keys = [info.key for page in pages for info in page]
            assert len(keys) == len(set(keys)) == LISTED  # every key once, no others
            assert set(keys) == set(wanted)
            assert len(pages) > 1 and all(pages)  # paged, and no page is empty
            if supports(store, "ordered_keys"):
                assert keys == sorted(keys)
            sizes = {info.key: info.size for page in pages for info in page}
            assert all(sizes[key] == len(data) for key, data in wanted.items())
            assert sorted(listed(store, "logs/2024/0100")) == [f"logs/2024/0100{i}.json"
                                                               for i in range(5)]
            assert listed(store, "nothing/") == []

    def test_deleting_a_page_removes_those_keys_only(
            self, object_backend: ObjectBackend) -> None:
        objects = {f"exports/{i:03d}.csv": b"a,b\n" for i in range(40)}
        with opened(object_backend.url) as store:
            put_all(store, objects)
            page = sorted(objects)[:25]
            assert store.delete(page) == len(page)
            assert listed(store, "exports/") == sorted(objects)[25:]
            with pytest.raises(StoreError):
                store.get(page[0])
            assert store.get(sorted(objects)[25]) == b"a,b\n"
            assert store.delete(page) == len(page)  # absent keys count as done

    def test_held_keys_are_kept_with_their_metadata(
            self, object_backend: ObjectBackend) -> None:
        """What a hold keeps out of a page stays, bytes, metadata and tags."""
        held = {"media/1.jpg", "media/10.jpg", "media/15.jpg"}
        with opened(object_backend.url) as store:
            for i in range(1, 21):
                store.put(f"media/{i}.jpg", f"image {i}".encode(),
                          metadata={"Subject": f"s{i}"}, tags={"class": "photo"})
            [page] = list(store.pages("media/"))
            store.delete([info.key for info in page if info.key not in held])
            left = [info for page in store.pages("media/", metadata=True, tags=True)
                    for info in page]
            assert {info.key for info in left} == held
            if supports(store, "object_metadata"):
                assert {info.key: dict(info.metadata) for info in left} == {
                    key: {"subject": f"s{key.split('/')[1].split('.')[0]}"} for key in held}
                assert all(dict(info.tags) == {"class": "photo"} for info in left)
            assert all(store.get(key) == f"image {key[6:-4]}".encode() for key in held)

    def test_a_deleted_object_leaves_no_version_behind(
            self, object_backend: ObjectBackend) -> None:
        """versioned_objects: in a versioned bucket a delete removes every version and
        delete marker of the key, and none of a held neighbour's (`a/1` vs `a/10`).
        Without the capability a delete leaves nothing to read either."""
        versioning = object_backend.versioning
        if versioning is not None:
            versioning.enable()
        with opened(object_backend.url) as store:
            for version in (1, 2, 3):
                store.put("a/1", f"v{version}".encode())
                store.put("a/10", f"v{version}".encode())
            store.delete(["a/1"])
            assert listed(store, "a/") == ["a/10"]
            with pytest.raises(StoreError):
                store.get("a/1")
            assert store.get("a/10") == b"v3"
            if supports(store, "versioned_objects"):
                assert versioning is not None
                assert versioning.versions("a/1") == 0
                assert versioning.versions("a/10") == 3

    def test_lifecycle_rules_are_read_and_set(self, object_backend: ObjectBackend) -> None:
        """lifecycle_rules: the store's own expiry rules round-trip; a store without
        them has no such methods."""
        with opened(object_backend.url) as store:
            if not supports(store, "lifecycle_rules"):
                assert not callable(getattr(store, "lifecycle", None))
                return
            assert store.lifecycle() == []
            rule = {"ID": "lethe-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
                    "Expiration": {"Days": 30}}
            store.set_lifecycle([rule])
            [read] = store.lifecycle()
            assert (read["ID"], read["Expiration"]["Days"]) == ("lethe-logs", 30)
            store.set_lifecycle([])
            assert store.lifecycle() == []
