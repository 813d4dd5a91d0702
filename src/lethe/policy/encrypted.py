"""Which columns the policy says must hold only encrypted values, and why.

A field is encrypted when it says so (`fields: {phone: {encrypted: true}}`) or when its
class does (`classes: {pii: {encrypted: true}}`: every field classified pii, by its own
class or else its dataset's). Only SQL tables: `check` verifies them there, value by
value, and the trust pages state encryption for exactly these columns.
"""

from __future__ import annotations

from lethe.policy.model import Policy


def encrypted_fields(policy: Policy, dataset: str) -> dict[str, str]:
    """The dataset's fields that must hold only encrypted values -> the policy path that
    says so (the field's own `encrypted`, else its class's)."""
    ds = policy.datasets[dataset]
    found: dict[str, str] = {}
    if ds.table is None:  # a model check refuses `encrypted` fields elsewhere
        return found
    for name, spec in ds.fields.items():
        kind = spec.class_ or ds.class_
        if spec.encrypted:
            found[name] = f"datasets.{dataset}.fields.{name}.encrypted"
        elif kind in policy.classes and policy.classes[kind].encrypted:
            found[name] = f"classes.{kind}.encrypted"
    return found
