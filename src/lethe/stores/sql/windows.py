"""How far each batch reaches along the key.

Two ways to bound a batch, both walking the key upward so no batch re-reads what an
earlier one removed:

* **Key ranges** (dense integer keys): the batch is simply `lo < key <= lo + width`.
  No statement is spent finding the window, which is what makes batching nearly as
  fast as one big DELETE. Keys are unique integers, so a range of `width` keys can
  never hold more than `width` rows: the transaction size has a hard bound even when
  the share of due rows jumps.
* **Key windows** (any other key): a first statement finds the key of the `limit`-th
  matching row after the previous batch; the batch covers up to it.
"""

from __future__ import annotations

from dataclasses import dataclass

GROWTH = 8  # widest range, in multiples of the batch size


@dataclass(frozen=True)
class KeySpan:
    low: int
    high: int


def is_dense(span: KeySpan, rows: int) -> bool:
    """Ranges pay off when keys are not much sparser than rows (sequences, not snowflakes)."""
    return rows > 0 and (span.high - span.low + 1) <= 4 * rows


def next_width(limit: int, width: int, matched: int) -> int:
    """Aim the next range at `limit` matching rows, between `limit` and GROWTH x `limit` keys."""
    if width <= 0:
        return limit
    density = matched / width
    if density <= 0:
        return min(width * 2, GROWTH * limit)
    return max(limit, min(int(limit / density), GROWTH * limit))
