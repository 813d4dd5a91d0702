"""A rule's rows as a store condition: its `when`, and which rule governs a row.

Below the engine (which builds every step from these) so that `check`'s residency and
the reports read a rule's rows exactly as the engine does.
"""

from __future__ import annotations

from collections.abc import Mapping

from lethe.policy.model import Dataset, Policy
from lethe.stores.base import Condition, Eq, Exists, In, IsNull, all_of, negate


def when_condition(when: Mapping[str, object], policy: Policy, ds: Dataset) -> Condition:
    """A rule's `when` as a condition on its dataset's rows. `PARENT.COLUMN` tests the
    row's parent through `belongs_to` (the account's tier): the parent row, found by its
    key (`inner` "" : the parent table's primary key), must match."""
    parts: list[Condition] = []
    for column, value in when.items():
        parent, _, own = column.partition(".")
        test = own if own and parent in ds.belongs_to else column
        if value is None:
            part: Condition = IsNull(test)
        elif isinstance(value, list):
            part = In(test, tuple(value))
        else:
            part = Eq(test, value)
        if test != column:
            up = policy.datasets[parent]
            part = Exists(up.table or "", up.key if isinstance(up.key, str) else "",
                          ds.belongs_to[parent], part)
        parts.append(part)
    return all_of(*parts)


def governed_by(ds: Dataset, index: int, policy: Policy) -> Condition:
    """Rows whose first matching rule is `index` (`policy`: to read parents' columns)."""
    earlier = [negate(when_condition(r.when, policy, ds)) for r in ds.retention[:index]]
    return all_of(when_condition(ds.retention[index].when, policy, ds), *earlier)
