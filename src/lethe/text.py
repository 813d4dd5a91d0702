"""Counts in words, for every sentence lethe prints or publishes ("1 signed checkpoint",
"2 signed checkpoints"): one place, so no output reads "1 entries"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, singular for exactly one (`plural` when adding "s" is wrong)."""
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"
