"""Claims: every sentence the trust pages publish, with the enforced facts it states.

A claim's `sources` are policy paths (`datasets.sessions.retention[0]`,
`datasets.users.soft_delete`, `stores.app.region`): the rule, erasure setting, field
handling, region or encryption declaration the engine enforces. A claim about one
dataset cites that dataset's own settings only, never another's rule; `lethe docs
--json` lists them, and tests check each against the policy. The sentences that depend
on more than one setting (what an erasure does to a dataset, what a dataset with no
rule says) are composed here, from those settings alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lethe.policy.model import Dataset, Policy
from lethe.policy.periods import keeps_a_while
from lethe.reports.trust_wording import anonymized, capital, noun, period


@dataclass(frozen=True)
class Claim:
    page: str  # retention | data-inventory | classification
    text: str
    sources: tuple[str, ...]  # the enforced facts it states, as policy paths
    dataset: str | None = None  # what it is about; None: a category or the organization
    evidence: str | None = None  # what backs it now (`lethe docs --evidence`: rules)

    def as_dict(self) -> dict[str, Any]:
        return {"page": self.page, "text": self.text, "sources": list(self.sources),
                "dataset": self.dataset, "evidence": self.evidence}


def retained_children(policy: Policy, name: str) -> list[str]:
    """Datasets kept after an erasure (`erasure: retain`) that belong to this one: while
    they refer to its rows, a real foreign key keeps those rows (scrubbed) too."""
    return [child for child, ds in policy.datasets.items()
            if name in ds.belongs_to and ds.erasure == "retain"]


def on_erasure(policy: Policy, name: str) -> Claim:
    """What an erasure request does to the person's rows of one dataset."""
    ds = policy.datasets[name]
    path = f"datasets.{name}"
    if ds.erasure == "retain":
        kept = ", ".join(period(r.keep) for r in ds.retention if keeps_a_while(r.keep))
        reason = ds.legal_basis or "a legal obligation"
        return Claim("retention", f"Kept{f' for {kept}' if kept else ''} (legal basis: "
                     f"{reason}){', then deleted' if kept else ''}",
                     (f"{path}.erasure", f"{path}.legal_basis",
                      *(f"{path}.retention[{i}]" for i, r in enumerate(ds.retention)
                        if keeps_a_while(r.keep))), name)
    if ds.erasure == "anonymize":
        return Claim("retention", f"Anonymised ({anonymized(ds)})",
                     (f"{path}.erasure", f"{path}.fields"), name)
    if ds.erasure == "shred":
        return Claim("retention", "Encryption keys destroyed (crypto-shredded)",
                     (f"{path}.erasure",), name)
    text, sources = "Deleted", [f"{path}.erasure"]
    if ds.soft_delete is not None and policy.subject_kind_of(name) is not None:
        text = (f"Deactivated at once and recoverable for "
                f"{period(ds.soft_delete.recover_for)}, then deleted")
        sources.append(f"{path}.soft_delete")
    if ds.referenced_by:
        text += " when nothing else refers to it"
        sources.append(f"{path}.referenced_by")
    keeping = retained_children(policy, name) if ds.anonymized_fields else []
    if ds.anonymized_fields and (ds.referenced_by or keeping):
        why = f"records we must keep ({', '.join(noun(policy, c) for c in keeping)})" \
            if keeping else "other records"
        text += (f"; while {why} still refer to it, it is kept with its personal fields "
                 f"anonymised ({anonymized(ds)})")
        sources += [f"{path}.fields", *(f"datasets.{c}.erasure" for c in keeping)]
    return Claim("retention", text, tuple(sources), name)


def without_rule(policy: Policy, name: str, linked: Sequence[str]) -> Claim:
    """What the retention page says of a dataset no rule limits: kept while the service
    runs; removed on request only where an erasure reaches it, as it does."""
    label = capital(noun(policy, name))
    path = f"datasets.{name}"
    if name not in linked or not policy.subjects:
        return Claim("retention", f"{label}: no retention period applies; kept for as long "
                     "as we provide the service.", (f"{path}.retention",), name)
    outcome = on_erasure(policy, name)
    return Claim("retention", f"{label}: no retention period applies; kept for as long as "
                 "we provide the service. When you ask us to delete your data: "
                 f"{outcome.text[:1].lower()}{outcome.text[1:]}.",
                 (f"{path}.retention", *outcome.sources), name)


def anonymised_by(policy: Policy, name: str, ds: Dataset, linked: Sequence[str]) -> bool:
    """Does anything enforced anonymise the dataset's fields: a rule, its erasure, or the
    scrub of rows an erasure must keep because others refer to them?"""
    if not ds.anonymized_fields:
        return False
    if any(r.action == "anonymize" for r in ds.retention):
        return True
    reached = name in linked and bool(policy.subjects)
    return reached and (ds.erasure == "anonymize" or (
        ds.erasure == "delete" and bool(ds.referenced_by or retained_children(policy, name))))


_STEP = re.compile(r"(\w+)(?:\[(\d+)\])?")


def enforced(policy: Policy, path: str) -> bool:
    """Does a claim's source name a setting the policy actually sets (a rule that exists,
    an erasure, a field map that is not empty)? A dataset's empty `retention` counts: a
    claim may state that no rule applies."""
    if path in ("audit", "subjects"):
        return path != "subjects" or bool(policy.subjects)
    node: Any = policy
    for part in path.split("."):
        match = _STEP.fullmatch(part)
        if match is None:
            return False
        name, index = match.group(1), match.group(2)
        if isinstance(node, dict):
            if name not in node:
                return False
            node = node[name]
        else:
            attribute = "class_" if name == "class" else name
            if not hasattr(node, attribute):
                return False
            node = getattr(node, attribute)
        if index is not None:
            if not isinstance(node, list) or int(index) >= len(node):
                return False
            node = node[int(index)]
    return path.endswith(".retention") or node not in (None, "", {}, [])


def unbacked(policy: Policy, claims: Sequence[Claim]) -> list[tuple[Claim, str]]:
    """(claim, source) for every claim citing a setting the policy does not set."""
    return [(claim, source) for claim in claims for source in claim.sources or ("",)
            if not enforced(policy, source)]
