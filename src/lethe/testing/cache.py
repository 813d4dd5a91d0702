"""The cache store suite (Redis): keys found by pattern, a page removed, held keys kept,
and a maximum time-to-live that never lengthens one.

Keys are written with the redis client straight to the backend, all under the
backend's prefix, which the caller removes afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from lethe.stores.base import CAPABILITIES, Store, supports
from lethe.stores.cache import RedisStore
from lethe.stores.registry import open_store
from lethe.testing.backends import CacheBackend

LISTED = 1_500  # more keys than one SCAN page asks for (1,000)
MAX_TTL = 3_600


@contextmanager
def opened(url: str) -> Iterator[RedisStore]:
    store = open_store("conformance", url)
    assert isinstance(store, Store) and isinstance(store, RedisStore)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def client(url: str) -> Iterator[Any]:
    raw = redis.Redis.from_url(url)
    try:
        yield raw
    finally:
        raw.close()


def listed(store: RedisStore, pattern: str) -> list[str]:
    return [key for page in store.pages(pattern) for key in page]


class CacheStoreSuite:
    """Every cache store adapter passes these. The caller provides `cache_backend`."""

    def test_a_cache_store_says_what_it_is(self, cache_backend: CacheBackend) -> None:
        with opened(cache_backend.url) as store:
            assert store.kind == "cache"
            assert store.capabilities <= set(CAPABILITIES)
            assert not supports(store, "transactional_batches")
            assert supports(store, "ttl")

    def test_listing_by_pattern_finds_exactly_its_keys(
            self, cache_backend: CacheBackend) -> None:
        p = cache_backend.prefix
        wanted = {f"{p}:user:{i}" for i in range(LISTED)}
        with client(cache_backend.url) as raw:
            pipe = raw.pipeline(transaction=False)
            for key in wanted:
                pipe.set(key, b"1")
            for i in range(20):
                pipe.set(f"{p}:session:{i}", b"1")
            pipe.set(f"{p}:other:user:1", b"1")
            pipe.execute()
        with opened(cache_backend.url) as store:
            keys = listed(store, f"{p}:user:*")
            assert set(keys) == wanted  # SCAN may repeat a key; none missing, no other
            assert len(keys) >= LISTED
            if supports(store, "ordered_keys"):
                assert keys == sorted(keys)
            assert set(listed(store, f"{p}:session:1*")) == \
                {f"{p}:session:1"} | {f"{p}:session:1{i}" for i in range(10)}

    def test_deleting_a_page_removes_those_keys_only(
            self, cache_backend: CacheBackend) -> None:
        """A page goes, however its keys are spelled (bytes that are not UTF-8 too);
        absent keys are not counted."""
        p = cache_backend.prefix
        odd = f"{p}:k:".encode() + b"\xff\xfe"
        with client(cache_backend.url) as raw:
            for i in range(30):
                raw.set(f"{p}:k:{i}", b"v")
            raw.set(odd, b"v")
        with opened(cache_backend.url) as store:
            page = [k for k in listed(store, f"{p}:k:*") if not k.endswith(("5", "7"))]
            assert len(page) == 31 - 6
            assert store.unlink_keys(page) == len(page)
            assert store.read(page) == []
            assert sorted(listed(store, f"{p}:k:*")) == sorted(
                f"{p}:k:{i}" for i in range(30) if i % 10 in (5, 7))
            assert store.unlink_keys(page) == 0
        with client(cache_backend.url) as raw:
            assert raw.exists(odd) == 0

    def test_held_keys_are_kept_and_ttls_are_only_ever_shortened(
            self, cache_backend: CacheBackend) -> None:
        """ttl: keys with no TTL or a longer one get the maximum, except held keys; a
        shorter TTL is never lengthened; deleting a page spares the held keys."""
        p = cache_backend.prefix
        held = {f"{p}:s:{i}" for i in (3, 11, 19)}
        with client(cache_backend.url) as raw:
            for i in range(20):
                raw.set(f"{p}:s:{i}", b"v")
            raw.expire(f"{p}:s:0", 60)  # shorter than the maximum
            raw.expire(f"{p}:s:1", 10 * MAX_TTL)  # longer
        raced = f"{p}:s:5"

        def held_meanwhile_shortened(key: str) -> bool:
            """The holds, asked once the TTLs were read: the application shortens
            `raced` right then, and its shorter TTL must win."""
            if key == raced:
                with client(cache_backend.url) as raw:
                    raw.expire(raced, 30)
            return key in held

        with opened(cache_backend.url) as store:
            census = store.census(f"{p}:s:*", MAX_TTL, held.__contains__)
            assert (census.over, census.held) == (16, 3)
            # `raced` is not counted: its EXPIRE ... LT found a shorter TTL and set nothing
            assert store.cap_ttl(f"{p}:s:*", MAX_TTL, lambda: held_meanwhile_shortened) == 15
            ttls = {key: ttl for key, _kind, ttl, _value in
                    store.read(sorted(set(listed(store, f"{p}:s:*"))))}
            assert {key for key, ttl in ttls.items() if ttl == -1} == held
            assert 0 < ttls[f"{p}:s:0"] <= 60
            assert 0 < ttls[raced] <= 30
            assert all(0 < ttl <= MAX_TTL for key, ttl in ttls.items() if key not in held)
            assert store.census(f"{p}:s:*", MAX_TTL, held.__contains__).over == 0
            page = sorted(set(listed(store, f"{p}:s:*")))
            assert store.unlink_keys([k for k in page if k not in held]) == 17
            assert set(listed(store, f"{p}:s:*")) == held
            assert [value for _key, _kind, _ttl, value in store.read(sorted(held))] == \
                ["v", "v", "v"]
