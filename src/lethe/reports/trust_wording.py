"""The words of the trust pages: policy terms turned into the sentences a published
retention or data-governance page uses ("We keep sessions for 30 days after last
activity, then delete them").

Pure functions of the policy, so the page says exactly what the engine enforces; a
change of wording is a change here, never a hand edit of a published page.
"""

from __future__ import annotations

from lethe.policy.model import Dataset, Policy, Rule, Scalar
from lethe.policy.periods import Keep, KeepFrom, keeps_a_while

_UNITS = {"m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}

# The time column a rule counts from, as a page says it; others read "the <name> date".
_EVENTS = {
    "created": "creation", "created_at": "creation", "inserted_at": "creation",
    "updated_at": "the last update", "modified_at": "the last update",
    "last_seen_at": "last activity", "last_active_at": "last activity",
    "last_login_at": "the last sign-in", "closed_at": "account closure",
    "deleted_at": "deletion", "expires_at": "expiry", "expired_at": "expiry",
    "issued_at": "the date of issue", "received_at": "receipt",
    "occurred_at": "the event", "recorded_at": "recording",
    "sent_at": "sending", "completed_at": "completion", "ended_at": "the end",
    "last_modified": "the last change", "": "the last change",
}

CLASSES = {
    "pii": "Personal data",
    "behavioral": "Usage data",
    "operational": "Operational data",
    "derived": "Derived data",
}

MEANINGS = {
    "pii": "Information that identifies a person, directly or together with other data: "
           "names, email addresses, phone numbers, IP addresses, account identifiers.",
    "behavioral": "Records of how people and systems use the service: product events, "
                  "integration deliveries, page views.",
    "operational": "Records we need to run, secure and bill for the service: sessions, "
                   "security logs, application logs, invoices.",
    "derived": "Aggregates and statistics computed from other data, holding no record of "
               "an individual.",
}

# `derived` of a dataset whose rows are a person's (segment memberships, scores): the
# general meaning ("no record of an individual") would be untrue of it.
DERIVED_PER_PERSON = ("Data computed from other data: aggregates and statistics, and "
                      "per-person results such as segment memberships or scores, which "
                      "are treated as that person's data.")

STORE_KINDS = {"sql": "Database", "objects": "Object storage", "cache": "Cache"}


_ACRONYMS = {"id": "ID", "ip": "IP", "api": "API", "oauth": "OAuth", "url": "URL",
             "sso": "SSO", "mfa": "MFA", "sms": "SMS", "ids": "IDs", "ips": "IPs"}


def words(name: str) -> str:
    """A column as words: `display_name` -> `display name`, `ip_address` -> `IP address`."""
    parts = name.replace("_", " ").replace("-", " ").replace(".", " ").split()
    return " ".join(_ACRONYMS.get(part.lower(), part) for part in parts)




def period(keep: Keep) -> str:
    """`30d` -> `30 days`; `forever` -> `indefinitely`; a period from data says who sets
    it and within which bounds (what the engine clamps it to)."""
    if isinstance(keep, KeepFrom):
        return (f"a period the customer chooses (customer-configurable: {period(keep.min)} "
                f"to {period(keep.max)}, default {period(keep.default)})")
    if keep.amount is None:
        return "indefinitely"
    unit = _UNITS[keep.unit]
    return f"{keep.amount} {unit}{'' if keep.amount == 1 else 's'}"


def starting_point(after: str) -> str:
    """The moment the clock starts, as words."""
    if after in _EVENTS:
        return _EVENTS[after]
    if after.startswith("metadata."):
        return f"the {words(after[len('metadata.'):])} date"
    base = words(after[:-3] if after.endswith("_at") else after)
    return f"the {base}" if base.lower().endswith(("date", "time", "day")) else \
        f"the {base} date"  # `return_date`: the return date, not "the return date date"


def condition(rule: Rule) -> str:
    """`{status: [pending, queued]}` -> `with status pending or queued`."""
    parts = []
    for column, value in rule.when.items():
        owner, _, own = column.partition(".")
        name = words(own or owner)
        # a parent's column (`accounts.tier`): "of accounts with tier free"
        of = "" if not own or owner in ("metadata", "tag") else f"of {words(owner)} "
        if value is None:
            parts.append(f"{of}with no {name}")
        elif isinstance(value, list):
            shown = [_value(v) for v in value]
            parts.append(f"{of}with {name} " + (" or ".join(shown)))
        else:
            parts.append(f"{of}with {name} {_value(value)}")
    return " and ".join(parts)


def _value(value: Scalar | None) -> str:
    return "empty" if value is None else str(value)


def field_treatment(method: Scalar) -> str:
    """What an anonymizer leaves behind, as a page says it."""
    return {
        "null": "removed",
        "redact": "replaced with “[redacted]”",
        "hash": "replaced with a one-way hash",
        "mask-email": "masked (j***@example.com)",
        "mask-email-domain": "masked to the domain (***@example.com)",
    }.get(str(method), "replaced with a fixed value")


def anonymized(ds: Dataset) -> str:
    """`email masked (…), phone removed`."""
    return ", ".join(f"{words(f)} {field_treatment(m)}"
                     for f, m in ds.anonymized_fields.items())


def method(policy: Policy, ds: Dataset, rule: Rule) -> str:
    """The deletion method of a rule, short, for a table cell."""
    if policy.stores[ds.store].kind == "cache":
        return "Expires automatically"
    if rule.action == "soft-delete" and ds.soft_delete is not None:
        return (f"Deleted, recoverable for {period(ds.soft_delete.recover_for)}, then "
                "permanently deleted")
    if rule.action == "anonymize":
        return f"Anonymised ({anonymized(ds)})"
    if rule.action == "archive" and rule.to is not None:
        return f"Archived to cold storage ({_where(policy, rule.to)}), then deleted"
    if rule.action == "shred":
        return "Encryption keys destroyed (crypto-shredded), then deleted"
    return "Deleted"


def noun(policy: Policy, name: str) -> str:
    """What a dataset holds, as a page names it: a subject's own dataset is its
    accounts (`user accounts`), any other its name in words (`password reset tokens`)."""
    kind = policy.subject_kind_of(name)
    if kind is None:
        return words(name)
    named = words(kind)  # a kind called `account`: "accounts", not "account accounts"
    return f"{named}s" if named.lower().endswith("account") else f"{named} accounts"


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def sentence(policy: Policy, name: str, ds: Dataset, rule: Rule) -> str:
    """The rule as a published page says it."""
    what = noun(policy, name)
    scope = f" {condition(rule)}" if rule.when else ""
    if policy.stores[ds.store].kind == "cache":
        return (f"{capital(what)}{scope} expire automatically at most {period(rule.keep)} "
                "after they are written.")
    if not keeps_a_while(rule.keep):
        return f"We keep {what}{scope} for as long as we provide the service."
    lead = f"We keep {what}{scope} for {period(rule.keep)} after {starting_point(rule.after)}"
    if rule.action == "soft-delete" and ds.soft_delete is not None:
        return (f"{lead}, then delete them; they can be restored for "
                f"{period(ds.soft_delete.recover_for)}, after which they are permanently "
                "deleted together with everything linked to them.")
    if rule.action == "anonymize":
        return (f"{lead}. After that they are anonymised: {anonymized(ds)}; what remains no "
                "longer identifies anyone and is kept for statistics.")
    if rule.action == "archive" and rule.to is not None:
        return (f"{lead}, then move them to cold storage ({_where(policy, rule.to)}), "
                "verify the copy and delete them from the live systems.")
    if rule.action == "shred":
        return (f"{lead}, then destroy the encryption keys that protect them, so every "
                "copy, backups included, becomes unreadable.")
    return f"{lead}, then delete them."


def _where(policy: Policy, store: str) -> str:
    region = policy.stores[store].region
    return f"{store}, region {region}" if region else store
