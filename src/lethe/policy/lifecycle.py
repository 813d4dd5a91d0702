"""The S3 lifecycle rules equivalent to a policy's object rules (push-down).

Pure translation, so `lethe lifecycle` prints, `--apply` sets and `check` compares the
same rules. Only what S3 can say exactly is pushed down: a dataset whose every object
is governed by one rule aged from last-modified time (its first rule has no `when`).
Anything with metadata conditions or a metadata age stays lethe's alone, since a
prefix-wide expiry would delete objects a longer rule keeps. Durations round up to
whole days (a month as 31 days, a year as 366), so the bucket never deletes before the
policy allows; lethe's own `run` stays exact. Versioned buckets: noncurrent versions
expire a day after they stop being current, or erased data would live on in them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lethe.policy.durations import Duration
from lethe.policy.model import Dataset, Policy
from lethe.policy.periods import longest

RULE_PREFIX = "lethe-"  # the bucket's rules lethe owns; others are left alone
_DAYS = {"m": 1 / 1440, "h": 1 / 24, "d": 1, "w": 7, "mo": 31, "y": 366}


@dataclass(frozen=True)
class Excluded:
    dataset: str
    reason: str


def lifecycle_days(keep: Duration) -> int:
    assert keep.amount is not None
    return max(1, math.ceil(keep.amount * _DAYS[keep.unit]))


def rule_id(dataset: str) -> str:
    return f"{RULE_PREFIX}{dataset}"


def expressible(ds: Dataset) -> str | None:
    """Why the dataset's rules cannot be a lifecycle rule, or None when they can."""
    if not ds.retention:
        return "no retention rule"
    first = ds.retention[0]
    if first.when:
        return "its rules test metadata, which lifecycle filters cannot"
    if first.after not in ("", "last_modified"):
        return "its age comes from metadata, not the last-modified time"
    if not isinstance(first.keep, Duration):
        return "its period comes from data"  # (the policy allows that on SQL only)
    if first.keep.forever:
        return "kept forever"
    return None


def lifecycle_rules(policy: Policy, store: str, root: str,
                    held: frozenset[str] = frozenset()) -> tuple[list[dict[str, Any]],
                                                              list[Excluded]]:
    """lethe's lifecycle rules for one S3 store (`root`: its key prefix in the bucket),
    and the datasets left out with why. Datasets a hold reaches are left out: the
    bucket would expire held objects."""
    rules: list[dict[str, Any]] = []
    excluded: list[Excluded] = []
    for name, ds in policy.datasets.items():
        if ds.store != store:
            continue
        why = "a legal hold reaches it" if name in held else expressible(ds)
        if why is not None:
            excluded.append(Excluded(name, why))
            continue
        rules.append({"ID": rule_id(name), "Status": "Enabled",
                      "Filter": {"Prefix": root + (ds.prefix or "")},
                      "Expiration": {"Days": lifecycle_days(longest(ds.retention[0].keep))},
                      "NoncurrentVersionExpiration": {"NoncurrentDays": 1}})
    return rules, excluded


def _comparable(rule: dict[str, Any]) -> tuple[Any, ...]:
    return (rule.get("ID"), rule.get("Status"), (rule.get("Filter") or {}).get("Prefix"),
            (rule.get("Expiration") or {}).get("Days"),
            (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays"))


def drift(wanted: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[str]:
    """How the bucket's lethe rules differ from the policy's (one line each)."""
    mine = {r.get("ID"): r for r in current if str(r.get("ID", "")).startswith(RULE_PREFIX)}
    problems = []
    for rule in wanted:
        have = mine.pop(rule["ID"], None)
        if have is None:
            problems.append(f"rule {rule['ID']} is missing")
        elif _comparable(have) != _comparable(rule):
            problems.append(f"rule {rule['ID']} differs from the policy")
    problems += [f"rule {rid} is not in the policy" for rid in sorted(map(str, mine))]
    return problems


def merged(wanted: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bucket's own rules kept, lethe's replaced by `wanted`."""
    return [r for r in current if not str(r.get("ID", "")).startswith(RULE_PREFIX)] + wanted
