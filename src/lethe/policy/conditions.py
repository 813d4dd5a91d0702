"""A rule's rows as a store condition: its `when`, and which rule governs a row.

Below the engine (which builds every step from these) so that `check`'s residency and
the reports read a rule's rows exactly as the engine does.
"""

from __future__ import annotations

from collections.abc import Mapping

from lethe.policy.model import Dataset
from lethe.stores.base import Condition, Eq, In, IsNull, all_of, negate


def when_condition(when: Mapping[str, object]) -> Condition:
    parts: list[Condition] = []
    for column, value in when.items():
        if value is None:
            parts.append(IsNull(column))
        elif isinstance(value, list):
            parts.append(In(column, tuple(value)))
        else:
            parts.append(Eq(column, value))
    return all_of(*parts)


def governed_by(ds: Dataset, index: int) -> Condition:
    """Rows whose first matching rule is `index`."""
    earlier = [negate(when_condition(r.when)) for r in ds.retention[:index]]
    return all_of(when_condition(ds.retention[index].when), *earlier)
