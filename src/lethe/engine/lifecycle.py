"""Push-down: lethe's object rules as the bucket's own lifecycle configuration.

The bucket then expires objects even between lethe runs. A legal hold must still win,
so datasets a hold reaches are left out when rules are applied, and placing a hold
withdraws the rules of every dataset it reaches from the bucket (`withdraw_held`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lethe.audit.events import LifecycleSet
from lethe.engine.objects import ObjectDatasets
from lethe.engine.plan import builder_for
from lethe.policy.lifecycle import Excluded, drift, lifecycle_rules, merged, rule_id
from lethe.runtime import Runtime
from lethe.stores.objects import S3Objects


@dataclass
class StoreLifecycle:
    store: str
    rules: list[dict[str, Any]]
    excluded: list[Excluded]
    drift: list[str] = field(default_factory=list)
    applied: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"rules": self.rules, "applied": self.applied, "drift": self.drift,
                "excluded": [{"dataset": e.dataset, "reason": e.reason}
                             for e in self.excluded]}


def _buckets(rt: Runtime) -> dict[str, S3Objects]:
    found = {}
    for name in rt.catalog.object_datasets():
        store = rt.policy.datasets[name].store
        objects = rt.catalog.object_store(store)
        if isinstance(objects, S3Objects):
            found[store] = objects
    return found


def _held(rt: Runtime) -> frozenset[str]:
    holds = rt.hold_scopes(builder_for(rt, rt.clock.now()))
    handler = ObjectDatasets(rt.policy, rt.catalog)
    return frozenset(n for n in rt.catalog.object_datasets()
                     if handler.reached_by_holds(n, holds))


def lifecycle(rt: Runtime, *, apply: bool = False) -> list[StoreLifecycle]:
    """Each S3 store's lifecycle rules per the policy, their drift from the bucket's, and
    (with `apply`) the bucket updated: its own rules kept, lethe's replaced."""
    buckets = _buckets(rt)
    held = _held(rt) if buckets else frozenset()
    results = []
    for store, bucket in buckets.items():
        rules, excluded = lifecycle_rules(rt.policy, store, bucket.root, held)
        current = bucket.lifecycle()
        result = StoreLifecycle(store, rules, excluded, drift(rules, current))
        if apply and result.drift:
            bucket.set_lifecycle(merged(rules, current))
            rt.audit.append(LifecycleSet(store, "applied", [r["ID"] for r in rules]))
            result.applied, result.drift = True, []
        results.append(result)
    return results


def withdraw_held(rt: Runtime) -> list[str]:
    """Take the rules of every dataset a hold now reaches off its bucket; their names."""
    buckets = _buckets(rt)
    if not buckets:
        return []
    held = _held(rt)
    withdrawn: list[str] = []
    for store, bucket in buckets.items():
        ids = {rule_id(n) for n in held if rt.policy.datasets[n].store == store}
        current = bucket.lifecycle()
        gone = [r["ID"] for r in current if r.get("ID") in ids]
        if gone:
            bucket.set_lifecycle([r for r in current if r.get("ID") not in ids])
            rt.audit.append(LifecycleSet(store, "withdrawn", gone))
            withdrawn += gone
    return withdrawn
