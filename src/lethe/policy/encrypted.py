"""Which columns the policy says must hold only encrypted values, and why.

A field is encrypted when it says so (`fields: {phone: {encrypted: true}}`) or when its
class does (`classes: {pii: {encrypted: true}}`: every field classified pii, by its own
class or else its dataset's). Only SQL tables: `check` verifies them there, value by
value, and the trust pages state encryption for exactly these columns.
"""

from __future__ import annotations

from lethe.errors import PolicyError
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


def anonymized_in_clear(policy: Policy) -> None:
    """An encrypted field's anonymizer must not write plaintext into it: `redact`, a
    hash, a mask or a fixed value would be the column's first unencrypted values (`null`
    empties it; crypto-shredding leaves the token unreadable)."""
    for name in policy.datasets:
        for column, source in encrypted_fields(policy, name).items():
            method = policy.datasets[name].fields[column].anonymize
            if method is not None and method != "null":
                raise PolicyError(f"anonymize: {method} would write plaintext into a column "
                                  f"that must be encrypted ({source}); use null",
                                  path=f"datasets.{name}.fields.{column}.anonymize")
