"""Redis: keys found by pattern, their time-to-live capped, a subject's keys removed.

Retention on a cache is a maximum TTL. Keys are walked with SCAN (never KEYS, which
blocks the server) and handled a page at a time through a pipeline: the TTL of each
key is read, and a key with no TTL or a longer one gets `EXPIRE key max LT`. LT makes
Redis itself keep whichever expiry is sooner, so a key whose TTL the application
shortened in between is never lengthened. Subjects' keys are removed with UNLINK
(freed in the background, not blocking the server either).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from lethe.errors import StoreError
from lethe.stores.base import Capabilities

PAGE = 1_000  # keys per SCAN page and per pipeline
NO_TTL = -1  # TTL reply for a key that never expires
GONE = -2  # TTL reply for a key that no longer exists

KeyFilter = Callable[[str], bool]  # True: leave this key alone (held)


@dataclass(frozen=True)
class TtlCensus:
    over: int  # keys with no TTL or one longer than the maximum, not held
    held: int  # such keys a hold keeps as they are


class RedisStore:
    """One Redis database (`redis://host:port/db`)."""

    kind = "cache"
    capabilities = Capabilities()
    # pages go through pipelines without MULTI: a failure part way leaves a page part done
    transactional_batches = False
    # SCAN has no order and may return a key twice (every handler here is idempotent)
    ordered_keys = False
    # keys expire by themselves: retention is a maximum TTL, capped with EXPIRE ... LT
    ttl = True

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        import redis  # only when a Redis store is configured

        try:
            self.client = redis.Redis.from_url(url, socket_timeout=30,
                                               socket_connect_timeout=5)
        except ValueError as exc:
            raise StoreError(f"invalid Redis URL: {exc}", path=f"stores.{name}.url") from None

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import redis

        try:
            yield
        except redis.RedisError as exc:
            # only the type: redis-py puts the failing command, key included, in the text
            raise StoreError(f"{what}: {type(exc).__name__}",
                             path=f"stores.{self.name}") from None

    def pages(self, pattern: str) -> Iterator[list[str]]:
        """Keys matching `pattern`, a SCAN page at a time (a key may repeat across pages,
        as SCAN allows; every handler here is idempotent)."""
        cursor = 0
        while True:
            with self._errors(f"scanning {pattern!r}"):
                cursor, keys = self.client.scan(cursor, match=pattern, count=PAGE)
            if keys:
                yield [k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k
                       for k in keys]
            if cursor == 0:
                return

    def _ttls(self, keys: Sequence[str]) -> list[int]:
        with self._errors("reading TTLs"):
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.ttl(_raw(key))
            return [int(t) for t in pipe.execute()]

    def census(self, pattern: str, max_ttl: int, held: KeyFilter) -> TtlCensus:
        """How many keys outlive the maximum TTL (no TTL, or a longer one)."""
        over = kept = 0
        for keys in self.pages(pattern):
            for key, ttl in zip(keys, self._ttls(keys), strict=True):
                if ttl == NO_TTL or ttl > max_ttl:
                    if held(key):
                        kept += 1
                    else:
                        over += 1
        return TtlCensus(over, kept)

    def cap_ttl(self, pattern: str, max_ttl: int, held_now: Callable[[], KeyFilter],
                on_page: Callable[[int], None] | None = None,
                guard: Callable[[], AbstractContextManager[object]] = nullcontext) -> int:
        """Give every key that would outlive `max_ttl` that TTL; returns how many.
        `held_now` is asked for the holds afresh for every page, inside `guard()`, which
        stays entered until the page's TTLs are set."""
        capped = 0
        for keys in self.pages(pattern):
            with guard():
                held = held_now()
                todo = [k for k, ttl in zip(keys, self._ttls(keys), strict=True)
                        if (ttl == NO_TTL or ttl > max_ttl) and not held(k)]
                if not todo:
                    continue
                with self._errors("setting TTLs"):
                    pipe = self.client.pipeline(transaction=False)
                    for key in todo:
                        pipe.expire(_raw(key), max_ttl, lt=True)
                    done = sum(bool(r) for r in pipe.execute())
            capped += done
            if on_page is not None:
                on_page(done)
        return capped

    def unlink_keys(self, keys: Sequence[str]) -> int:
        """Remove these keys; returns how many existed."""
        removed = 0
        for start in range(0, len(keys), PAGE):
            with self._errors("removing keys"):
                removed += int(self.client.unlink(*map(_raw, keys[start:start + PAGE])))
        return removed

    def read(self, keys: Sequence[str]) -> list[tuple[str, str, int, Any]]:
        """(key, type, TTL in seconds or -1, value) for each key that still exists; a
        value is text where it decodes as UTF-8, bytes otherwise."""
        with self._errors("reading keys"):
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.type(_raw(key))
                pipe.ttl(_raw(key))
            meta = pipe.execute()
            pipe = self.client.pipeline(transaction=False)
            kinds = [_text(meta[2 * i]) for i in range(len(keys))]
            for key, kind in zip(keys, kinds, strict=True):
                {"string": lambda k: pipe.get(k), "hash": lambda k: pipe.hgetall(k),
                 "list": lambda k: pipe.lrange(k, 0, -1), "set": lambda k: pipe.smembers(k),
                 "zset": lambda k: pipe.zrange(k, 0, -1, withscores=True)}.get(
                    kind, lambda k: pipe.exists(k))(_raw(key))
            values = pipe.execute()
        found = []
        for index, (key, kind, value) in enumerate(zip(keys, kinds, values, strict=True)):
            if kind == "none":
                continue  # gone since it was found
            found.append((key, kind, int(meta[2 * index + 1]), _plain(value)))
        return found

    def close(self) -> None:
        self.client.close()


def _raw(key: str) -> bytes:
    """A key as Redis holds it: keys are read as text with undecodable bytes escaped,
    and go back as the same bytes."""
    return key.encode("utf-8", "surrogateescape")


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def _plain(value: Any) -> Any:
    """A Redis reply as plain data: text where possible, containers as lists and dicts."""
    if isinstance(value, dict):
        return {str(_text(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set) else items
    return _text(value)
