"""Anonymization methods: how a value is rewritten, and how to tell it still identifies.

The second half makes anonymize idempotent and verifiable: a row is due only while
one of its fields still holds an un-anonymized value, so a re-run finds nothing and
the verification re-count is exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from lethe.stores.base import Condition, Differs, IsNull, NotLike, negate

REDACTED = "[redacted]"
HASH_PREFIX = "sha256:"


def mask_email(value: Any) -> Any:
    if value is None:
        return None
    text = str(value)
    if "***" in text:
        return text
    local, at, domain = text.partition("@")
    return f"{local[:1]}***@{domain}" if at else "***"


def mask_email_domain(value: Any) -> Any:
    """`peter@example.com` -> `***@example.com`: nothing of the local part stays (its
    first letter, which `mask-email` keeps, narrows a small domain down to a person)."""
    if value is None:
        return None
    text = str(value)
    if text.startswith("***"):
        return text
    _local, at, domain = text.partition("@")
    return f"***@{domain}" if at else "***"


def hash_value(value: Any) -> Any:
    if value is None or str(value).startswith(HASH_PREFIX):
        return value
    return HASH_PREFIX + hashlib.sha256(str(value).encode("utf-8")).hexdigest()


def anonymizer(method: Any) -> Callable[[Any], Any]:
    if method == "null":
        return lambda _value: None
    if method == "redact":
        return lambda value: None if value is None else REDACTED
    if method == "hash":
        return hash_value
    if method == "mask-email":
        return mask_email
    if method == "mask-email-domain":
        return mask_email_domain
    return lambda value: None if value is None else method


def constant_written(method: Any) -> tuple[bool, Any]:
    """(whether `anonymizer(method)` writes one value into every value that is not NULL,
    that value): `null` (None), `redact` and a literal do, a hash or a mask depends on
    the value. Such a rewrite needs no row read first (`Anonymize.constants`)."""
    if method == "null":
        return True, None
    if method == "redact":
        return True, REDACTED
    if method in ("hash", "mask-email", "mask-email-domain"):
        return False, None
    return True, method


def still_identifying(column: str, method: Any) -> Condition:
    """Rows where `column` does not yet hold what `method` writes."""
    if method == "null":
        return negate(IsNull(column))
    if method == "redact":
        return Differs(column, REDACTED)
    if method == "hash":
        return NotLike(column, HASH_PREFIX + "%")
    if method == "mask-email":
        return NotLike(column, "%***%")
    if method == "mask-email-domain":  # `***@domain`, or `***` for a value with no @
        return NotLike(column, "***%")
    return Differs(column, method)
