"""Work made one step ahead on a thread of its own (a bulk run's next group, made ready
while the caller erases this one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Made = TypeVar("Made")


class Ahead(Generic[Item, Made]):
    """`make(item)` for every item, in order, each on a background thread while the
    caller works on the one before: iterating gives what each made (or raises what it
    raised), the next already under way. Never more than one item ahead, so a caller
    that stops early leaves at most one made and unused; leaving waits for it (nothing
    runs on behind the caller's back)."""

    def __init__(self, items: Sequence[Item], make: Callable[[Item], Made],
                 name: str = "lethe-ahead") -> None:
        self._items, self._make = items, make
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def __enter__(self) -> Ahead[Item, Made]:
        return self

    def __iter__(self) -> Iterator[Made]:
        upcoming: Future[Made] | None = \
            self._pool.submit(self._make, self._items[0]) if self._items else None
        for following in range(1, len(self._items) + 1):
            assert upcoming is not None
            made = upcoming.result()
            upcoming = self._pool.submit(self._make, self._items[following]) \
                if following < len(self._items) else None
            yield made

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown(wait=True)


__all__ = ["Ahead"]
