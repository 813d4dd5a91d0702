"""`lethe docs`: the organization's trust pages, generated from the policy.

Three pages, each in HTML and Markdown: the retention schedule, the data inventory
and residency, and classification handling. The content is built first as plain
data (`trust_pages`, pure), then rendered by Jinja2 templates with every value
escaped, so the published page and the enforced policy cannot drift apart and policy
text can never inject markup into either format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from lethe.crypto.signing import key_fingerprint, key_id, load_public
from lethe.errors import LetheError, UsageError
from lethe.policy.encrypted import encrypted_fields
from lethe.policy.model import Dataset, Policy
from lethe.policy.periods import keeps_a_while
from lethe.policy.periods import longest as longest_of
from lethe.policy.periods import shortest as shortest_of
from lethe.reports.evidence import RuleEvidence, RuleKey
from lethe.reports.trust_claims import Claim, anonymised_by, on_erasure, without_rule
from lethe.reports.trust_wording import (
    CLASSES,
    DERIVED_PER_PERSON,
    MEANINGS,
    STORE_KINDS,
    anonymized,
    capital,
    condition,
    method,
    noun,
    period,
    sentence,
    starting_point,
    words,
)
from lethe.requests.service import DUE_AFTER

FORMATS = ("html", "markdown")
PAGES = (("retention", "Retention schedule"),
         ("data-inventory", "Data inventory and residency"),
         ("classification", "Data classification and handling"))


@dataclass(frozen=True)
class ScheduleRow:
    data: str
    category: str
    when: str  # "" or "with status processed"
    period: str
    starts: str
    method: str
    sentence: str
    evidence: str = ""  # `lethe docs --evidence`: last verified run, oldest row, lag


@dataclass(frozen=True)
class ErasureRow:
    data: str
    outcome: str


@dataclass(frozen=True)
class InventoryRow:
    data: str
    category: str
    store: str
    kind: str
    region: str
    notes: tuple[str, ...]


@dataclass(frozen=True)
class RegionRow:
    region: str
    stores: tuple[str, ...]
    categories: tuple[str, ...]


@dataclass(frozen=True)
class ClassSection:
    key: str
    title: str
    meaning: str
    datasets: tuple[str, ...]
    fields: tuple[str, ...]
    protections: tuple[str, ...]


@dataclass(frozen=True)
class PublishedKey:
    """The organization's certificate-signing key, published beside the pages so that
    anyone can pin it (`lethe certificate verify --public-key organization-key.pem`)."""

    file: str
    key_id: str
    fingerprint: str  # SHA-256 of the raw public key


KEY_FILE = "organization-key.pem"


@dataclass(frozen=True)
class TrustPages:
    organization: str
    updated: str
    schedule: tuple[ScheduleRow, ...]
    unscheduled: tuple[str, ...]  # sentences on datasets no rule limits
    erasure: tuple[ErasureRow, ...]
    erasure_days: int
    regions: tuple[RegionRow, ...]
    residency: tuple[str, ...]  # paragraphs
    inventory: tuple[InventoryRow, ...]
    classes: tuple[ClassSection, ...]
    key: PublishedKey | None = None  # None: no organization key yet, nothing published
    claims: tuple[Claim, ...] = ()  # every sentence about the data, with its sources


def subject_linked(policy: Policy) -> list[str]:
    """Datasets an erasure reaches: each subject's dataset, everything that belongs to
    it (transitively), the rows those point at (`referenced_by`), and datasets that
    locate a subject's data with `per_subject`."""
    reached: set[str] = set()
    todo = [s.dataset for s in policy.subjects.values()]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += [child for child, ds in policy.datasets.items() if name in ds.belongs_to]
    reached |= {n for n, ds in policy.datasets.items()
                if ds.per_subject or any(r in reached for r in ds.referenced_by)}
    return [n for n in policy.datasets if n in reached]


def _label(policy: Policy, name: str) -> str:
    return capital(noun(policy, name))


def _names(policy: Policy, names: Iterable[str]) -> str:
    return ", ".join(_label(policy, n) for n in names)


# what lethe's field encryption is (lethe.crypto.fields): said only of declared columns
ENCRYPTED_AT_REST = "Encrypted at rest (AES-256-GCM, per-subject keys)"


def _shredded(ds: Dataset) -> bool:
    return ds.erasure == "shred" or any(r.action == "shred" for r in ds.retention)


# a rule's sentence also states: the recovery window (soft-delete), the fields (anonymize)
_RULE_SETTINGS = {"soft-delete": "soft_delete", "anonymize": "fields"}


def _schedule(policy: Policy, linked: Sequence[str],
              evidence: Mapping[RuleKey, RuleEvidence] | None = None
              ) -> tuple[list[ScheduleRow], list[Claim], list[Claim]]:
    """The schedule's rows; its claims (one per rule, with its evidence when given); the
    claims of datasets no rule limits."""
    rows, claims, unscheduled = [], [], []
    for name, ds in policy.datasets.items():
        if not ds.retention:
            unscheduled.append(without_rule(policy, name, linked))
        cache = policy.stores[ds.store].kind == "cache"
        for index, rule in enumerate(ds.retention):
            row = ScheduleRow(
                _label(policy, name), CLASSES[ds.class_], condition(rule), period(rule.keep),
                "when written" if cache else
                (starting_point(rule.after) if rule.after else "—"),
                method(policy, ds, rule), sentence(policy, name, ds, rule),
                evidence[(name, index)].text() if evidence and (name, index) in evidence
                else "")
            rows.append(row)
            sources = [f"datasets.{name}.retention[{index}]"]
            if rule.action in _RULE_SETTINGS:  # the setting the sentence also states
                sources.append(f"datasets.{name}.{_RULE_SETTINGS[rule.action]}")
            claims.append(Claim("retention", row.sentence, tuple(sources), name,
                                row.evidence or None))
    return rows, claims, unscheduled


def _sealed(policy: Policy, name: str, verified: Mapping[str, Sequence[str]]
            ) -> dict[str, str]:
    """The dataset's columns declared encrypted that a check found no plaintext in ->
    the setting that declares them: the pages say "encrypted" of these only."""
    return {f: source for f, source in encrypted_fields(policy, name).items()
            if f in verified.get(name, ())}


def _notes(policy: Policy, name: str, ds: Dataset, linked: Sequence[str],
           verified: Mapping[str, Sequence[str]]) -> list[Claim]:
    path = f"datasets.{name}"
    notes = [Claim("data-inventory", ds.description, (f"{path}.description",), name)] \
        if ds.description else []
    personal = [words(f) for f, spec in ds.fields.items() if spec.class_ == "pii"]
    if personal:
        notes.append(Claim("data-inventory", "Personal fields: " + ", ".join(personal),
                           (f"{path}.fields",), name))
    sealed = _sealed(policy, name, verified)
    if sealed:
        notes.append(Claim("data-inventory", f"{ENCRYPTED_AT_REST}: "
                           + ", ".join(words(f) for f in sealed),
                           tuple(dict.fromkeys(sealed.values())), name))
    if ds.workspace:
        notes.append(Claim("data-inventory", "Separated by workspace", (f"{path}.workspace",),
                           name))
    if name in linked and policy.subjects:
        notes.append(Claim("data-inventory", "Included in data access and erasure requests",
                           (f"{path}.belongs_to" if ds.belongs_to else
                            f"{path}.referenced_by" if ds.referenced_by else
                            f"{path}.per_subject" if ds.per_subject else "subjects",), name))
    if _shredded(ds):
        notes.append(Claim("data-inventory", "Encrypted with a key per person",
                           (f"{path}.erasure" if ds.erasure == "shred" else
                            f"{path}.retention",), name))
    for index, rule in enumerate(ds.retention):
        if rule.action == "archive" and rule.to is not None:
            region = policy.stores[rule.to].region
            notes.append(Claim(
                "data-inventory", f"Archived to cold storage{f' in {region}' if region else ''} "
                f"after {period(rule.keep)}", (f"{path}.retention[{index}]",), name))
    if ds.erasure == "retain" and ds.legal_basis:
        notes.append(Claim("data-inventory", f"Kept after an erasure request: {ds.legal_basis}",
                           (f"{path}.erasure", f"{path}.legal_basis"), name))
    return notes


def _regions(policy: Policy) -> list[RegionRow]:
    names = list(dict.fromkeys([*policy.regions,
                                *(s.region for s in policy.stores.values() if s.region)]))
    rows = []
    for region in names:
        stores = [n for n, s in policy.stores.items() if s.region == region]
        held = [title for key, title in CLASSES.items() if any(
            ds.class_ == key and (ds.store in stores or any(r.to in stores for r in ds.retention))
            for ds in policy.datasets.values())]
        rows.append(RegionRow(region, tuple(f"{n} ({STORE_KINDS[policy.stores[n].kind]})"
                                            for n in stores), tuple(held)))
    return rows


def _residency(policy: Policy) -> list[str]:
    regions = ", ".join(policy.regions)
    if policy.residency is None:
        return [f"We store data in the following regions: {regions}."] if regions else []
    home = words(policy.residency.dataset)
    text = [f"We operate in these regions: {regions}. Each workspace has a home region, "
            f"recorded with the workspace in our {home} records, which the workspace's "
            "administrators can change through our API.",
            "A workspace's data is stored only in its home region. Our governance checks "
            "report any workspace data held in another region, and data leaves a "
            "workspace's region only under a recorded, audited authorisation that states "
            "the reason and, where it is temporary, the end date."]
    if policy.residency.default:
        text.append("Workspaces that have not chosen a region are hosted in "
                    f"{policy.residency.default}.")
    return text


def _protections(policy: Policy, key: str, with_fields: Sequence[tuple[str, Dataset]],
                 linked: Sequence[str], verified: Mapping[str, Sequence[str]]) -> list[Claim]:
    """What protects a category's data (`with_fields`: datasets of the category, and
    those with fields of it). How long each is kept is said with the datasets it holds
    for, from their own rules; those no rule limits are named as such."""
    page, found = "classification", []
    limited = [(n, i, r) for n, ds in with_fields for i, r in enumerate(ds.retention)
               if keeps_a_while(r.keep)]
    if limited:  # a period from data spans its bounds
        shortest = min((shortest_of(r.keep) for _, _, r in limited), key=_sort_key)
        longest = max((longest_of(r.keep) for _, _, r in limited), key=_sort_key)
        span = period(shortest) if shortest == longest else \
            f"between {period(shortest)} and {period(longest)}, depending on the record"
        ends = dict.fromkeys(_END.get(r.action, "deleted") for _, _, r in limited)
        names = _names(policy, dict.fromkeys(n for n, _, _ in limited))
        found.append(Claim(page, f"{names}: kept for {span}, then {' or '.join(ends)} by "
                           "scheduled jobs that verify every deletion.",
                           tuple(f"datasets.{n}.retention[{i}]" for n, i, _ in limited)))
    unlimited = [n for n, ds in with_fields
                 if not any(keeps_a_while(r.keep) for r in ds.retention)]
    if unlimited:
        found.append(Claim(page, f"No retention period applies to {_names(policy, unlimited)}: "
                           "kept for as long as we provide the service.",
                           tuple(f"datasets.{n}.retention" for n in unlimited)))
    if key == "pii":
        treated = [(n, ds) for n, ds in with_fields if anonymised_by(policy, n, ds, linked)]
        if treated:
            found.append(Claim(page, "When personal data is anonymised, identifying fields "
                               "are overwritten: " + "; ".join(
                                   f"{_label(policy, n)}: {anonymized(ds)}" for n, ds in treated)
                               + ".", tuple(f"datasets.{n}.fields" for n, _ in treated)))
    tenants = [n for n, ds in with_fields if ds.workspace]
    if tenants:
        found.append(Claim(page, f"Stored per workspace ({_names(policy, tenants)}): each "
                           "record names the workspace it belongs to, and records that belong "
                           "to no single workspace are marked as organization-level, never "
                           "left blank.", tuple(f"datasets.{n}.workspace" for n in tenants)))
    if tenants and policy.termination is not None:
        found.append(_termination(policy, page, tenants))
    personal = [n for n, _ in with_fields if n in linked]
    if policy.subjects and personal:
        found.append(Claim(page, f"Records linked to a person ({_names(policy, personal)}) are "
                           "included in data access exports (JSON and CSV) and erased within "
                           f"{DUE_AFTER.days} days of a verified erasure request, with a signed "
                           "certificate of deletion.",
                           tuple(f"datasets.{n}.erasure" for n in personal)))
    sealed = {f"{_label(policy, n)} {words(f)}": source for n, _ds in with_fields
              for f, source in _sealed(policy, n, verified).items()
              if (policy.datasets[n].fields[f].class_ or policy.datasets[n].class_) == key}
    if sealed:
        found.append(Claim(page, f"{ENCRYPTED_AT_REST}: {', '.join(sealed)}; every "
                           "stored value was checked.",
                           tuple(dict.fromkeys(sealed.values()))))
    shredded = [n for n, ds in with_fields if _shredded(ds)]
    if shredded:
        found.append(Claim(page, f"Encrypted with a key of its own for each person "
                           f"({_names(policy, shredded)}); erasure destroys the key, so every "
                           "copy, backups included, becomes unreadable.",
                           tuple(f"datasets.{n}.erasure" for n in shredded)))
    found.append(Claim(page, "Never deleted while under a legal hold; every deletion is "
                       "recorded in a tamper-evident audit log.", ("audit",)))
    return found


def _termination(policy: Policy, page: str, tenants: Sequence[str]) -> Claim:
    """What terminating a workspace does (lethe.requests.termination), in its terms."""
    terms = policy.termination
    assert terms is not None
    cancel = "" if not terms.recover_for.amount else \
        f"; for the first {period(terms.recover_for)} it can be cancelled and nothing is erased"
    return Claim(page, f"When a workspace is terminated, its records ({_names(policy, tenants)}"
                 ", and everything that belongs to them, archived copies included) are "
                 f"erased within {period(terms.within)} of the request, each as an erasure "
                 "request treats it, with a signed certificate for the workspace"
                 f"{cancel}.",
                 ("termination.within", *(["termination.recover_for"] if cancel else []),
                  *(f"datasets.{n}.workspace" for n in tenants)))


_END = {"soft-delete": "deleted", "anonymize": "anonymised", "archive": "archived",
        "shred": "crypto-shredded"}


def _sort_key(keep: Any) -> float:
    days = {"m": 1 / 1440, "h": 1 / 24, "d": 1, "w": 7, "mo": 30.44, "y": 365.25}
    return float(keep.amount) * days[keep.unit]


def _columns_of(ds: Dataset, key: str) -> list[str]:
    return [words(f) for f, spec in ds.fields.items() if spec.class_ == key]


def _classes(policy: Policy, linked: Sequence[str], verified: Mapping[str, Sequence[str]]
             ) -> tuple[list[ClassSection], list[Claim]]:
    sections, claims = [], []
    for key, title in CLASSES.items():
        members = [(n, ds) for n, ds in policy.datasets.items() if ds.class_ == key]
        fields = [f"{_label(policy, n)} ({', '.join(columns)})" for n, ds in policy.datasets.items()
                  if ds.class_ != key and (columns := _columns_of(ds, key))]
        with_fields = members + [(n, ds) for n, ds in policy.datasets.items()
                                 if ds.class_ != key
                                 and any(s.class_ == key for s in ds.fields.values())]
        if not with_fields:
            continue
        meaning = MEANINGS[key]
        if key == "derived" and any(n in linked for n, _ in members):
            meaning = DERIVED_PER_PERSON  # segment memberships, scores: per person
        found = _protections(policy, key, with_fields, linked, verified)
        claims += found
        sections.append(ClassSection(key, title, meaning,
                                     tuple(_label(policy, n) for n, _ in members),
                                     tuple(fields), tuple(c.text for c in found)))
    return sections, claims


def trust_pages(policy: Policy, now: datetime,
                evidence: Mapping[RuleKey, RuleEvidence] | None = None,
                encrypted: Mapping[str, Sequence[str]] | None = None) -> TrustPages:
    """The pages' content, from the policy alone (and, when given, the evidence behind
    each rule); every sentence also as a `Claim`. `encrypted`: dataset -> its columns
    declared encrypted in which every stored value was found encrypted (`lethe docs
    --evidence` reads them): the pages say "encrypted at rest" of these and nothing
    else, since the policy alone cannot make a column encrypted."""
    verified = encrypted or {}
    linked = subject_linked(policy)
    schedule, ruled, unscheduled = _schedule(policy, linked, evidence)
    notes = {n: _notes(policy, n, ds, linked, verified) for n, ds in policy.datasets.items()}
    inventory = [InventoryRow(_label(policy, n), CLASSES[ds.class_], ds.store,
                              STORE_KINDS[policy.stores[ds.store].kind],
                              policy.stores[ds.store].region or "not specified",
                              tuple(c.text for c in notes[n]))
                 for n, ds in policy.datasets.items()]
    outcomes = [on_erasure(policy, n) for n in linked] if policy.subjects else []
    erasure = [ErasureRow(_label(policy, c.dataset or ""), c.text) for c in outcomes]
    classes, protections = _classes(policy, linked, verified)
    claims = [*ruled, *unscheduled, *outcomes, *(c for n in notes for c in notes[n]),
              *protections]
    return TrustPages(policy.organization, f"{now:%B} {now.day}, {now.year}",
                      tuple(schedule), tuple(c.text for c in unscheduled), tuple(erasure),
                      DUE_AFTER.days, tuple(_regions(policy)), tuple(_residency(policy)),
                      tuple(inventory), tuple(classes), claims=tuple(claims))


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def markdown_escape(value: Any) -> str:
    """Every value in a Markdown page: HTML-escaped (Markdown passes HTML through) and
    its Markdown punctuation backslashed; a newline would break a table row."""
    text = "" if value is None else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _environment(fmt: str) -> jinja2.Environment:
    loader = jinja2.PackageLoader("lethe.reports", "templates")
    if fmt == "html":
        return jinja2.Environment(loader=loader, autoescape=True,
                                  undefined=jinja2.StrictUndefined,
                                  trim_blocks=True, lstrip_blocks=True)
    return jinja2.Environment(loader=loader, autoescape=False, finalize=markdown_escape,
                              undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render(pages: TrustPages, fmt: str) -> dict[str, str]:
    """File name -> page text, for one format."""
    env = _environment(fmt)
    suffix = "html" if fmt == "html" else "md"
    nav = [(f"{slug}.{suffix}", title) for slug, title in PAGES]
    return {f"{slug}.{suffix}": env.get_template(f"trust_{slug}.{suffix}.j2").render(
                p=pages, title=title, nav=nav)
            for slug, title in PAGES}


def formats(choice: str) -> tuple[str, ...]:
    if choice == "both":
        return FORMATS
    if choice in FORMATS:
        return (choice,)
    raise UsageError(f"unknown format {choice!r} (html, markdown or both)", path="--format")


def write_trust_pages(policy: Policy, now: datetime, out: Path,
                      choice: str = "both", public_key: str | None = None,
                      evidence: Mapping[RuleKey, RuleEvidence] | None = None) -> list[Path]:
    """Render the pages into `out` (created if missing); the paths written, in order.
    `public_key`: the organization's PEM public key, published beside them."""
    return write_pages(trust_pages(policy, now, evidence), out, choice, public_key)


def write_pages(pages: TrustPages, out: Path, choice: str = "both",
                public_key: str | None = None) -> list[Path]:
    """Render pages already built (see `write_trust_pages`) into `out`."""
    if public_key is not None:
        key = load_public(public_key)
        pages = replace(pages, key=PublishedKey(KEY_FILE, key_id(key), key_fingerprint(key)))
    chosen = formats(choice)
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        if public_key is not None:
            (out / KEY_FILE).write_text(public_key, encoding="ascii")
            written.append(out / KEY_FILE)
        for fmt in chosen:
            for name, text in render(pages, fmt).items():
                path = out / name
                path.write_text(text, encoding="utf-8")
                written.append(path)
    except OSError as exc:
        raise LetheError(f"cannot write the trust pages: {exc.strerror}", path=str(out)) \
            from None
    return written
